from shadowproxy.cli import main

main()
