pytest_plugins = [
    "tests.redis_fixtures",
    "tests.proxy_fixtures",
    "tests.inject.plugin",
    "tests.e2e.plugin",
]
