pytest_plugins = ["tests.redis_fixtures", "tests.proxy_fixtures"]
