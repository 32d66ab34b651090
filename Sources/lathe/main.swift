import LatheCLI
LatheCommand.main()
