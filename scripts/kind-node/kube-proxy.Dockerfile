# kube-proxy: Debian bookworm (minbase) with the iptables/nftables/conntrack tools it runs, and a
# wrapper that picks the node's iptables backend (upstream's image does the same).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN export DEBIAN_FRONTEND=noninteractive \
    && apt-get update -q \
    && apt-get install -y -q --no-install-recommends iptables nftables conntrack ipset kmod \
    && apt-get clean -y \
    && rm -rf /var/cache/debconf/* /var/lib/apt/lists/* /var/log/* /usr/share/doc/* /usr/share/man/*
COPY support/iptables-wrapper /usr/sbin/iptables-wrapper
RUN for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \
        rm -f "/usr/sbin/${cmd}" && ln -s iptables-wrapper "/usr/sbin/${cmd}"; \
    done
COPY bin/kube-proxy /usr/local/bin/kube-proxy
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
