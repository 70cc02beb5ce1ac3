def preload(parser):
    parser.add_argument("--toy-flag", type=str, default="unset", help="toy extension flag")
