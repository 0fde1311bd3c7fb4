from qualgent.cli.main import main

main()
