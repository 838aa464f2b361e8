# The kind node image, built here the way kind's images/base/Dockerfile builds kindest/base, with
# Debian bookworm's packages in place of the binaries kind compiles (containerd, runc, CNI plugins)
# and our own Kubernetes binaries in place of `kind build node-image`'s. Driven by
# scripts/kind-node-image.sh, whose build context holds:
#   files/   kind's images/base/files from the pinned kind module
#   bin/     kubeadm kubelet kubectl crictl (built from their Go modules)
#   support/ this folder (CNI conflist, containerd drop-ins)
# The control-plane images are imported into containerd afterwards (see the script).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY files/LICENSES/ /LICENSES/

# (modes: set in the build context as kind's COPY --chmod does, 0644 files, 0755 scripts.)
# kind's package list (fuse-overlayfs, nfs-common, open-iscsi and curl left out: no rootless, no
# network storage, no network), plus what kind builds from source: containerd, runc, CNI plugins.
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confold \
      systemd \
      conntrack iptables nftables iproute2 ethtool util-linux mount kmod \
      libseccomp2 pigz \
      bash ca-certificates jq procps \
      containerd runc containernetworking-plugins \
    && apt-get clean -y \
    && rm -rf /var/cache/debconf/* /var/lib/apt/lists/* /var/log/* /tmp/* /var/tmp/* \
       /usr/share/doc/* /usr/share/doc-base/* /usr/share/man/* \
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* \
    && rm -f /etc/systemd/system/*.wants/* \
    && rm -f /lib/systemd/system/local-fs.target.wants/* \
    && rm -f /lib/systemd/system/sockets.target.wants/*udev* \
    && rm -f /lib/systemd/system/sockets.target.wants/*initctl* \
    && rm -f /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && ln -sf "$(command -v systemd || echo /lib/systemd/systemd)" /sbin/init

# kind's units and scripts expect containerd in /usr/local/bin and the CNI plugins in /opt/cni/bin.
RUN ln -s /usr/bin/containerd /usr/local/bin/containerd \
    && ln -s /usr/bin/ctr /usr/local/bin/ctr \
    && ln -s /usr/bin/containerd-shim-runc-v2 /usr/local/bin/containerd-shim-runc-v2 \
    && mkdir -p /opt/cni/bin \
    && for p in /usr/lib/cni/*; do ln -s "$p" /opt/cni/bin/; done \
    && systemctl enable kubelet.service \
    && systemctl enable containerd.service \
    && systemctl enable undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && mkdir -p /etc/kubernetes/manifests \
    && ctr oci spec \
        | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
        | jq 'del(.process.rlimits)' \
        > /etc/containerd/cri-base.json \
    && containerd --version && runc --version

COPY bin/ /usr/bin/
COPY support/cni/ /etc/cni/net.d/
COPY support/sysctl/ /etc/sysctl.d/
COPY support/node-entrypoint /usr/local/bin/streamproxy-node-entrypoint
COPY support/storage/default-storage.yaml /kind/manifests/default-storage.yaml
COPY support/storage/node-path-provisioner /usr/local/bin/node-path-provisioner
COPY support/storage/node-path-provisioner.service /etc/systemd/system/node-path-provisioner.service
ARG KUBE_VERSION
ARG SANDBOX_IMAGE
RUN chmod 0755 /usr/local/bin/streamproxy-node-entrypoint /usr/local/bin/node-path-provisioner /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl /usr/bin/crictl \
    && printf '%s' "${KUBE_VERSION}" > /kind/version \
    && sed -i "s#^\(\s*sandbox_image\s*=\s*\).*#\1\"${SANDBOX_IMAGE}\"#" /etc/containerd/config.toml \
    && grep -q "sandbox_image = \"${SANDBOX_IMAGE}\"" /etc/containerd/config.toml \
    && systemctl enable node-path-provisioner.service \
    && kubeadm version -o short && kubelet --version

# systemd in a container (https://systemd.io/CONTAINER_INTERFACE/); SIGRTMIN+3 stops it.
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT [ "/usr/local/bin/streamproxy-node-entrypoint", "/sbin/init" ]
