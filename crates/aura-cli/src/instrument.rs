//! What `aura instrument` writes: a container image build file, Kubernetes sidecar and DaemonSet manifests
//! (non-root UID 1000, read-only root file system, every capability dropped, a seccomp profile) and systemd
//! units that run `aura sensor` next to each asset.

/// Values substituted into the templates.
#[derive(Debug, Clone)]
pub(crate) struct Params {
    pub image: String,
    pub namespace: String,
    pub server: String,
}

/// `(file name, target, contents)` for every generated file.
pub(crate) fn files(p: &Params) -> Vec<(String, &'static str, String)> {
    let security = r#"          securityContext:
            runAsNonRoot: true
            runAsUser: 1000
            runAsGroup: 1000
            readOnlyRootFilesystem: true
            allowPrivilegeEscalation: false
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: Localhost
              localhostProfile: profiles/aura-sensor.json"#;
    let container = format!(
        r#"        - name: aura-sensor
          image: {image}
          args: ["sensor", "--server", "{server}", "--data-dir", "/var/lib/aura"]
          env:
            - name: AURA_TOKEN
              valueFrom:
                secretKeyRef: {{name: aura-sensor-token, key: token}}
            - name: AURA_ASSET_NAME
              valueFrom:
                fieldRef: {{fieldPath: metadata.name}}
            - name: AURA_NODE_NAME
              valueFrom:
                fieldRef: {{fieldPath: spec.nodeName}}
          resources:
            requests: {{cpu: 10m, memory: 16Mi}}
            limits: {{cpu: 100m, memory: 64Mi}}
{security}
          volumeMounts:
            - {{name: aura-data, mountPath: /var/lib/aura}}
            - {{name: tmp, mountPath: /tmp}}"#,
        image = p.image,
        server = p.server,
    );
    let ns = &p.namespace;
    vec![
        (
            "Containerfile".to_owned(),
            "container",
            r#"# Image running `aura sensor` as a sidecar or DaemonSet member (build: docker build -f Containerfile .)
FROM rust:1-slim AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p aura-cli

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/aura /usr/local/bin/aura
USER 1000:1000
VOLUME ["/var/lib/aura"]
ENTRYPOINT ["/usr/local/bin/aura"]
CMD ["sensor", "--data-dir", "/var/lib/aura"]
"#
            .to_owned(),
        ),
        (
            "kubernetes/sidecar-patch.yaml".to_owned(),
            "kubernetes",
            format!(
                r#"# Strategic-merge patch adding the aura-sensor sidecar to a Deployment:
#   kubectl -n <ns> patch deployment <name> --patch-file kubernetes/sidecar-patch.yaml
spec:
  template:
    spec:
      containers:
{container}
      volumes:
        - name: aura-data
          emptyDir: {{}}
        - name: tmp
          emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
"#
            ),
        ),
        (
            "kubernetes/daemonset.yaml".to_owned(),
            "kubernetes",
            format!(
                r#"# One aura-sensor per node: kubectl apply -f kubernetes/daemonset.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: {ns}
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: aura-sensor
  namespace: {ns}
automountServiceAccountToken: false
---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: aura-sensor
  namespace: {ns}
  labels: {{app.kubernetes.io/name: aura-sensor}}
spec:
  selector:
    matchLabels: {{app.kubernetes.io/name: aura-sensor}}
  template:
    metadata:
      labels: {{app.kubernetes.io/name: aura-sensor}}
    spec:
      serviceAccountName: aura-sensor
      automountServiceAccountToken: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        fsGroup: 1000
        seccompProfile:
          type: Localhost
          localhostProfile: profiles/aura-sensor.json
      containers:
{container}
      volumes:
        - name: aura-data
          hostPath: {{path: /var/lib/aura, type: DirectoryOrCreate}}
        - name: tmp
          emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
"#
            ),
        ),
        (
            "kubernetes/seccomp/aura-sensor.json".to_owned(),
            "kubernetes",
            r#"{
  "defaultAction": "SCMP_ACT_ERRNO",
  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
  "syscalls": [
    {
      "names": [
        "read", "write", "openat", "close", "fstat", "newfstatat", "statx", "statfs", "fstatfs", "lseek",
        "mmap", "munmap", "mprotect", "madvise", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
        "sigaltstack", "ioctl", "pread64", "readv", "writev", "access", "faccessat2", "pipe2", "dup", "dup3",
        "socket", "connect", "getsockname", "getpeername", "getsockopt", "setsockopt", "sendto", "recvfrom",
        "sendmsg", "recvmsg", "shutdown", "poll", "ppoll", "epoll_create1", "epoll_ctl", "epoll_wait",
        "epoll_pwait", "eventfd2", "futex", "clone", "clone3", "exit", "exit_group", "wait4", "getpid",
        "gettid", "getuid", "geteuid", "getgid", "getegid", "uname", "fcntl", "getdents64", "getcwd",
        "rename", "renameat", "renameat2", "mkdir", "mkdirat", "unlink", "unlinkat", "fsync", "fdatasync",
        "clock_gettime", "clock_nanosleep", "nanosleep", "sched_yield", "sched_getaffinity", "getrandom",
        "prlimit64", "set_robust_list", "rseq", "set_tid_address", "inotify_init1", "inotify_add_watch",
        "inotify_rm_watch", "readlink", "readlinkat", "sysinfo", "statfs", "restart_syscall", "tgkill"
      ],
      "action": "SCMP_ACT_ALLOW"
    }
  ]
}
"#
            .to_owned(),
        ),
        (
            "systemd/aura-sensor.service".to_owned(),
            "systemd",
            format!(
                r#"# Runs `aura sensor` on this host: install to /etc/systemd/system/, then
#   systemctl daemon-reload && systemctl enable --now aura-sensor.service
[Unit]
Description=Aura sensor (live asset context for {server})
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/bin/aura sensor --server {server} --data-dir /var/lib/aura
EnvironmentFile=-/etc/aura/sensor.env
Restart=on-failure
RestartSec=5
DynamicUser=yes
StateDirectory=aura
User=aura
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
CapabilityBoundingSet=
AmbientCapabilities=
SystemCallFilter=@system-service
SystemCallArchitectures=native
MemoryMax=64M
CPUQuota=10%

[Install]
WantedBy=multi-user.target
"#,
                server = p.server
            ),
        ),
    ]
}
