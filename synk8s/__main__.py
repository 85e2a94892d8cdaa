from synk8s.cli.main import main

main()
