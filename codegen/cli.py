"""The `codegen` command line.

Subcommands are imported only when invoked, so `codegen lint` never pays for torch.
Every `CodegenError` becomes one line on stderr and its exit code; no traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from codegen.errors import CodegenError

# command name -> "module:click command". Kept as a table so `--help` lists every
# command without importing any of them.
COMMANDS = {
    "analyze": (
        "codegen.commands.analyze:analyze",
        "Architecture features of an HF model, with evidence.",
    ),
    "scaffold": (
        "codegen.commands.scaffold:scaffold",
        "Generate a model package from the closest reference.",
    ),
    "verify": (
        "codegen.commands.verify:verify",
        "Prove logits parity of model packages with transformers.",
    ),
    "register": (
        "codegen.commands.register:register",
        "Add a model to a framework's registry files.",
    ),
    "registry": ("codegen.commands.registry:registry", "Edit one registry container in place."),
    "lint": ("codegen.commands.lint:lint", "Static consistency check of model registries."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        target, _ = COMMANDS[name]
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name != module_name:
                raise
            return _not_available(name)
        return getattr(module, attr)

    def format_commands(self, ctx, formatter):
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _not_available(name: str) -> click.Command:
    @click.command(name=name, help=COMMANDS[name][1])
    def command():
        raise CodegenError(f"`codegen {name}` is not available in this build")

    return command


@click.group(cls=LazyGroup)
@click.version_option(package_name="codegen")
def cli():
    """Analyze, scaffold, register and verify Hugging Face decoder models."""


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the CLI, turning CodegenError into one line + exit code."""
    try:
        returned = cli.main(args=argv, prog_name="codegen", standalone_mode=False)
    except CodegenError as err:
        click.echo(f"codegen: error: {err}", err=True)
        return err.exit_code
    except OSError as err:  # a disk or permission fault no command anticipated: still one line
        where = f"{err.filename}: " if err.filename else ""
        click.echo(f"codegen: error: {where}{err.strerror or err}", err=True)
        return 2
    except click.exceptions.Exit as err:
        return err.exit_code
    except SystemExit as err:  # a command's own verdict, e.g. lint findings -> 1
        return err.code if isinstance(err.code, int) else 1
    except click.ClickException as err:
        err.show()
        return 2
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 1
    return returned if isinstance(returned, int) else 0  # ctx.exit(n) returns n


if __name__ == "__main__":
    sys.exit(main())
