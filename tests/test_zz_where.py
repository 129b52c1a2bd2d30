import services
def test_x(): print(services.__file__); assert "wt-dup-tests" in services.__file__
