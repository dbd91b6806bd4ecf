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
"#;
