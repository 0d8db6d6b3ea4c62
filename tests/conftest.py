pytest_plugins = ["resilient.testing.pytest_plugin"]
