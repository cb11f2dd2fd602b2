from llero.cli.main import main

main()
