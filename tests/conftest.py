pytest_plugins = ["resilient.testing.pytest_plugin", "redis_fixtures"]
