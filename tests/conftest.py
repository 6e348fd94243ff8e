pytest_plugins = ["tests.fakes.providers", "tests.fakes.database", "tests.fakes.hostile"]
