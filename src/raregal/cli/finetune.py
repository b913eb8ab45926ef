"""``raregal finetune``: placeholder until the fine-tuning command lands (issue #26 item 3)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("finetune", help="(not yet built) fine-tune the encoder on labels")
    p.set_defaults(func=lambda args: 1)
