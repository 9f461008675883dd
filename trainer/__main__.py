"""`python -m trainer ...`: the trainer's commands without the web app."""

from trainer.cli import app

if __name__ == "__main__":
    app()
