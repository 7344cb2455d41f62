from batchrunner.cli import main

main()
