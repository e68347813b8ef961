"""The typer application and its sub-groups; command modules attach themselves to these."""
import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ragtune: retrieval-augmented generation, fine-tuned end to end.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate retrieval (BEIR) or question answering (SQuAD-style).")
app.add_typer(eval_app, name="eval")
convert_app = typer.Typer(no_args_is_help=True, help="Turn SQuAD JSON or BEIR qrels into `ragtune train` JSONL rows.")
app.add_typer(convert_app, name="convert")
