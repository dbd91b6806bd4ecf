//! The commented starter `aura.yaml` that `aura init` writes.

/// A complete `aura.yaml` with every setting at its default and a one-line explanation each.
/// Parsing it gives exactly [`crate::Config::default`].
pub const STARTER_YAML: &str = r#"# aura.yaml: settings for Aura. Every line below shows the built-in default;
# change what you need, or delete a line to go back to the default.
# Full reference: docs/configuration.md

server:
  # Address and port Aura listens on (API, dashboard, gateway). Use 0.0.0.0:7470 to accept other machines.
  listen: 127.0.0.1:7470
  # On stop (Ctrl-C), seconds to let requests in progress finish (1 to 3600).
  shutdown_timeout_seconds: 10
  # Seconds one request may take before it is cancelled (1 to 3600).
  request_timeout_seconds: 30
  # Largest request body accepted, in bytes (2097152 = 2 MiB; at most 1073741824 = 1 GiB).
  max_body_bytes: 2097152

# Folder where Aura keeps its data; a relative path starts at this file's folder.
data_dir: ./aura-data

store:
  # Database. Leave unset to use the file aura.db inside data_dir, or give a URL, for example:
  #   url: sqlite:///var/lib/aura/aura.db
  #   url: postgres://aura:password@127.0.0.1:5432/aura
  # url:
  # PostgreSQL only: schema (namespace) for Aura's tables, created if missing.
  # schema: aura
  # Most database connections open at once (1 to 1000).
  max_connections: 10
  # Seconds to wait when connecting to the database (1 to 600).
  connect_timeout_seconds: 5

log:
  # Log line format: text (for people) or json (for log collectors).
  format: text
  # How much to log: trace, debug, info, warn or error; per module too, e.g. info,aura_server=debug.
  # The AURA_LOG environment variable overrides this.
  level: info

policies:
  # Folder of policy YAML files; a relative path starts at this file's folder.
  dir: ./policies
  # Reload the policies automatically when their files change (true or false).
  watch: true
  # Accept a reload that lets an agent do more than before without --force (true or false).
  allow_widening: false

audit:
  # Milliseconds between signed checkpoints of the audit log while entries arrive (1 to 1000).
  checkpoint_interval_ms: 100
  # Size in bytes at which an audit log file is sealed (67108864 = 64 MiB; 1048576 to 4294967296).
  segment_bytes: 67108864
  # Name of this audit log in its signed checkpoints: printable ASCII without spaces or +, e.g. example.com/log.
  origin: aura.local/audit
  # When an agent's action may take effect: `written` once its decision is in the audit log file (survives a crash
  # of Aura; the fdatasync runs alongside the effect), or `durable` only after the fdatasync (survives a power loss
  # too, at the cost of one fdatasync on every action's path).
  effect_gate: written
  # Export the log to S3-compatible storage while Aura runs: remove the # in front of `export:` and its
  # settings. Credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never from this file.
  # export:
  #   # Bucket and optional prefix to export to.
  #   url: s3://aura-audit/prod
  #   # An S3-compatible server instead of AWS, e.g. MinIO.
  #   endpoint: http://127.0.0.1:9000
  #   # Region of the bucket.
  #   region: us-east-1
  #   # Allow an endpoint that uses plain http:// (true or false).
  #   allow_http: false
  #   # Seconds between exports; the first runs when Aura starts (1 to 86400).
  #   interval_seconds: 3600
  #   # Days each exported file is locked against deletion (S3 Object Lock, COMPLIANCE; 1 to 36500).
  #   retention_days: 365

governance:
  # Seconds after which a budget reservation that was not settled is released (1 to 86400).
  reservation_ttl_seconds: 300
  # Where budget counters live: store (the database, shared) or memory (this process only, lost on restart).
  ledger: store

context:
  sensor:
    # Run this host's sensor inside `aura up`, keeping <data_dir>/assets/<asset id>.aav current (true or false).
    enabled: true
    # Asset id of this host; leave unset to use the host name.
    # asset_id: web-1
    # Seconds between samples when the host is quiet; slows down under load (1 to 3600).
    interval_seconds: 5
    # Sensors to run: compute, memory, storage, network, services (services also needs checks below).
    sensors: [compute, memory, storage, network]
    # Processes listed in the top-N tables (0 to 50).
    top_processes: 5
    # The sensor's own memory cap in MiB; it reports when it cannot stay under it (1 to 4096).
    max_rss_mb: 64
    # The sensor's own CPU cap in percent of one core; it slows sampling to stay under it (1 to 100).
    max_cpu_percent: 5
  changes:
    # Change in CPU use, in percentage points, worth rewriting the file (1 to 100).
    cpu_percent: 5
    # Change in memory use, in percentage points, worth rewriting the file (1 to 100).
    memory_percent: 5
    # Change in disk use, in percentage points, worth rewriting the file (1 to 100).
    storage_percent: 1
    # Change in open connections worth rewriting the file (1 to 100000).
    connections: 10
    # Least milliseconds between two writes of a file; spikes and service state changes skip it (0 to 60000).
    min_write_interval_ms: 1000
    # Rewrite the file at least this often, in seconds, so it never looks stale (1 to 86400).
    heartbeat_seconds: 60
  files:
    # Backups kept per asset file, used by the Guardian to repair (0 to 100).
    backups: 5
    # Least seconds between two backups of a file (0 to 86400).
    backup_interval_seconds: 60
    # Keep a compressed history of past values in <data_dir>/assets/.history (true or false).
    history: false
  guardian:
    # Check asset files periodically inside `aura up` (true or false).
    enabled: true
    # Seconds between checks (1 to 86400).
    interval_seconds: 60
    # Seconds without an update after which a file is stale; 0 never (0 to 604800).
    stale_after_seconds: 300
    # Repair what the check finds; every repair is audited (true or false).
    repair: true
    # Highest repair level: 1 syntax fix, 2 backup, 3 partial, 4 skeleton, 5 sensor restart (1 to 5).
    max_repair_level: 5
  # HTTP health checks run by the services sensor, for example:
  #   - name: api
  #     url: http://127.0.0.1:8080/health
  #     timeout_seconds: 5
  #     version_header: x-version
  services: []
mesh:
  # Event mesh backend: embedded (a durable log in data_dir), nats, redis or kafka.
  backend: embedded
  # Server of the nats, redis or kafka backend, e.g. nats://127.0.0.1:4222 or redis://127.0.0.1:6379.
  # url:
  # Size in bytes at which an embedded mesh log file is sealed (67108864 = 64 MiB; 4096 to 4294967296).
  segment_bytes: 67108864
  # Warn once a dead-letter queue holds this many messages (0 = never).
  dlq_alert_threshold: 100
  # Keep publishing to a local spool while the nats/redis/kafka server is down, forwarded on return (true or false).
  spool: true
  # Agents Aura starts and restarts (child processes, or tmux windows with mode: tmux), for example:
  #   - name: planner
  #     command: [python3, planner.py]
  #     heartbeat_timeout_seconds: 60
  agents: []
# The LLM gateway (agents set their OpenAI/Anthropic/Gemini base URL to Aura): remove the # in front of
# `gateway:` and its settings. Provider keys come from the environment variables named here, never from this file.
# gateway:
#   providers:
#     - { name: openai, kind: openai, base_url: https://api.openai.com, api_key_env: OPENAI_API_KEY }
#   models:
#     - { name: gpt-4o-mini, deployments: [{ provider: openai, model: gpt-4o-mini }] }
proxy:
  # Start the HTTP enforcement proxy with `aura up` (true or false). Agents set HTTP_PROXY/HTTPS_PROXY to it.
  enabled: true
  # Address and port the proxy listens on.
  listen: 127.0.0.1:7471
  # Largest request body the proxy forwards, in bytes (10485760 = 10 MiB; 0 to 1073741824).
  max_body_bytes: 10485760
  # Seconds to wait when connecting to a target (1 to 600).
  connect_timeout_seconds: 10
  # Seconds a target may take to answer a plain-HTTP request (1 to 3600).
  request_timeout_seconds: 60

mcp:
  # Serve the Model Context Protocol at /mcp on the main listener (true or false).
  enabled: true
  # Absolute folders the run_command tool may run commands in; empty means it runs none.
  workdirs: []
  # Seconds one command run by run_command may take (1 to 3600).
  command_timeout_seconds: 30
  # Largest tool answer in bytes; longer answers are cut and say so (65536 = 64 KiB; 1024 to 16777216).
  max_output_bytes: 65536

catalog:
  # Rows a query returns when it names no `limit` (1 to 100000).
  default_limit: 100
  # Changes buffered per watch stream before it is told it fell behind (16 to 1000000).
  watch_buffer: 4096
  # Parsed queries kept for reuse (1 to 1000000).
  parsed_cache: 1024

discovery:
  # Scanners `aura up` runs at start: local, systemd, docker, libvirt, aws, kubernetes, or the tags host,
  # services, containers, vms, cloud, k8s. Empty runs none; `aura scan` runs any of them on demand.
  scanners: []
  # Seconds between two runs of those scanners; 0 runs them once at start (0 to 604800).
  interval_seconds: 0
  # Docker endpoint; DOCKER_HOST or the local socket when unset.
  # docker_host: unix:///var/run/docker.sock
  # libvirt connection URI; virsh's default when unset.
  # libvirt_uri: qemu:///system
  kubernetes:
    # kubeconfig file; KUBECONFIG, ~/.kube/config, then the in-cluster service account when unset.
    # kubeconfig: /etc/aura/kubeconfig
    # kubeconfig context; its current context when unset.
    # context: prod
    # Namespaces to read; every namespace when empty.
    namespaces: []
    # Label selector applied to every list, e.g. app=web,tier!=cache.
    # label_selector: app=web

cache:
  # Assets held by the in-process hot tier (1 to 10000000).
  hot_capacity: 10000
  # Seconds an asset stays in the hot tier (1 to 86400).
  hot_ttl_seconds: 300
  # Redis tier shared by several Aura nodes; none when unset.
  # redis_url: redis://127.0.0.1:6379/0
  # Prefix of every Redis key and of the invalidation channel.
  redis_prefix: "aura:"
  # Seconds an asset stays in the Redis tier (1 to 86400).
  redis_ttl_seconds: 300
  # Cold tier: every asset version archived to S3-compatible storage (credentials from AWS_* variables).
  # cold:
  #   url: s3://aura-history/prod
  #   endpoint: http://127.0.0.1:9000
  #   region: us-east-1
  #   allow_http: false
"#;
