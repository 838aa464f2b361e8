# A stand-in for the chart's redis image (redis:7) when no registry can be reached: Debian's
# redis-server (7.0) on the pod tier's offline base, laid out like the official image
# (uid/gid 999, WORKDIR /data, entrypoint that accepts `redis-server ...` or bare flags).
ARG BASE_IMAGE=streamproxy-base:bookworm
FROM ${BASE_IMAGE}

# policy-rc.d: no service may start while packages install.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d \
    && chmod +x /usr/sbin/policy-rc.d \
    && groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid 999 --home-dir /data --no-create-home redis \
    && apt-get update \
    && apt-get install -y --no-install-recommends redis-server=5:7.0.* \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /usr/sbin/policy-rc.d \
    && install -d -o redis -g redis /data

COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh

WORKDIR /data
USER 999:999
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
