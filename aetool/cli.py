"""The ``aetool`` command: a root group that loads each command's module when it is called.

The commands live by stage: ``aetool.commands.pictures`` (reconstruct, interpolate, sample, encode,
decode), ``aetool.commands.scoring`` (score, calibrate), ``aetool.commands.bundles`` (info, list,
evaluate, web) import numpy, Pillow and onnxruntime only; ``aetool.training.commands`` (train,
export, train-classifier, compare, bench) is the training stage's, and imports torch when one of
them runs.  This module names them by path, so it is the one place that sees both stages, and a
command runs without importing the others (``aetool sample`` never loads the training stage).
Each command parses options and calls one function of the Python API.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from . import __version__
from .commands.common import Command
from .errors import AetoolError

COMMANDS = {  # name: "module:function"
    "bench": "aetool.training.commands:bench",
    "calibrate": "aetool.commands.scoring:calibrate",
    "compare": "aetool.training.commands:compare",
    "decode": "aetool.commands.pictures:decode",
    "encode": "aetool.commands.pictures:encode",
    "evaluate": "aetool.commands.bundles:evaluate",
    "export": "aetool.training.commands:export",
    "info": "aetool.commands.bundles:info",
    "interpolate": "aetool.commands.pictures:interpolate",
    "list": "aetool.commands.bundles:list_cmd",
    "reconstruct": "aetool.commands.pictures:reconstruct",
    "sample": "aetool.commands.pictures:sample",
    "score": "aetool.commands.scoring:score",
    "train": "aetool.training.commands:train",
    "train-classifier": "aetool.training.commands:train_classifier_cmd",
    "web": "aetool.commands.bundles:web",
}


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) as an exception: the same clean-up as Ctrl-C, so a terminated command
    removes its temporary files and stops its worker processes instead of dying in place."""


def _terminate(signum: int, _frame) -> None:
    raise Terminated(signum)


def _on_termination() -> dict:
    """Make SIGTERM and SIGHUP raise Terminated where nothing else handles them; returns what to restore."""
    import signal

    saved = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) == signal.SIG_DFL:
            saved[sig] = signal.signal(sig, _terminate)
    return saved


class Group(click.Group):
    """Loads a command's module on demand, and turns AetoolError (and OS errors on user files) into
    one line and exit status 1."""

    command_class = Command

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        from .fileio import one_line

        saved = _on_termination()
        try:
            return super().invoke(ctx)
        except AetoolError as e:
            click.echo(f"error: {one_line(str(e))}", err=True)
            sys.exit(1)
        except BrokenPipeError:  # the reader went away (aetool list | head): not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            sys.exit(1)
        except OSError as e:
            where = f": {e.filename}" if getattr(e, "filename", None) else ""
            click.echo(f"error: {one_line(f'{e.strerror or e}{where}')}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Terminated as e:
            click.echo("terminated", err=True)
            sys.exit(128 + int(e.args[0]))
        finally:
            import signal

            for sig, handler in saved.items():  # a caller in the same process (a test) gets its own back
                signal.signal(sig, handler)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="aetool")
def main() -> None:
    """Train, export and run the EE-559 convolutional autoencoder on MNIST-like digits.

    \b
    aetool sample -n 64                  new digits from the shipped bundle
    aetool train --d 16 && aetool export train your own, then use it
    aetool list                          the bundles found here and shipped
    """


if __name__ == "__main__":
    main()
