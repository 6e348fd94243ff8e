"""``python -m shadowproxy.simulator --port N``: the simulator as a server."""

from shadowproxy.simulator.app import main

if __name__ == "__main__":
    main()
