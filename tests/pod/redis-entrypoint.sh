#!/bin/sh
# Same contract as the official redis image's entrypoint: bare flags or a .conf file mean
# `redis-server ...`, and without a config file protected mode is off (the pod network decides).
set -e
case "$1" in
    -* | *.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
    case "$2" in
        *.conf) ;;
        *) shift; set -- redis-server --protected-mode no "$@" ;;
    esac
fi
exec "$@"
