"""The `trainfleet` command: the entry point (`trainfleet = "instance_benchmarks.cli:main"`).

Thin Typer commands over library functions, one module per group in `instance_benchmarks/commands/`
(campaign, models, jobs, local, catalog; info and doctor at the top level), all over one environment
factory (`commands/shared.py`: `environment`, with the --local/--state/--region options every AWS command
takes). This module only registers them and maps errors: bad input of any kind (campaign files, instance
types, paths, credentials) ends in one line on stderr, `error: ...`, and exit status 2, before anything is
launched. Imports run one way: this module imports `commands`; nothing there imports it.
"""
from __future__ import annotations

import sys

import typer
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError
from typer.core import TyperOption

from instance_benchmarks.commands.campaign import campaign_app
from instance_benchmarks.commands.catalog import catalog_app
from instance_benchmarks.commands.doctor import doctor
from instance_benchmarks.commands.info import info
from instance_benchmarks.commands.jobs import jobs_app
from instance_benchmarks.commands.local import local_app
from instance_benchmarks.commands.models import models_app
from instance_benchmarks.core.errors import TrainfleetInputError
from instance_benchmarks.core.safe_output import safe_text

app = typer.Typer(no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False,
                  help="Train PyTorch models on AWS spot instances; benchmark EC2 instance types for cost and throughput.")
app.add_typer(campaign_app, name="campaign")  # commands/campaign.py (`campaign schema` too: a group's commands live in its module)
app.add_typer(models_app, name="models")      # commands/models.py
app.add_typer(catalog_app, name="catalog")    # commands/catalog.py
app.add_typer(local_app, name="local")        # commands/local.py
app.add_typer(jobs_app, name="jobs")          # commands/jobs.py
app.command("info")(info)                     # commands/info.py
app.command("doctor")(doctor)                 # commands/doctor.py

# the AWS credential errors that mean "refresh your credentials", each one line and exit 2
REJECTED_CREDENTIALS = ("ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidClientTokenId",
                        "UnrecognizedClientException", "AuthFailure", "SignatureDoesNotMatch")


def _no_flag_types() -> None:
    """Typer's Rich help prints a type beside every option, `<bool>` beside flags (which take no value):
    flags get no type column; every other option keeps its `<path>`, `<str>`, ... ."""
    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "_trainfleet", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._trainfleet = True
    TyperOption.display_type_rich = display_type_rich


_no_flag_types()


def main() -> None:
    """Console entry point: map input, credential and connection errors to one line and exit 2."""
    try:
        # non-standalone Typer returns the status of a `typer.Exit` (and 130 for Ctrl-C) instead of exiting
        status = app(standalone_mode=False)
        if status == 130:
            print("error: interrupted", file=sys.stderr)
        elif status == 143:
            print("error: terminated (SIGTERM)", file=sys.stderr)
        sys.exit(status if isinstance(status, int) else 0)
    except TrainfleetInputError as error:
        _die(str(error))
    except NoCredentialsError:
        _die("no AWS credentials found: configure a profile or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    except NoRegionError:
        _die("no AWS region: pass --region or set AWS_DEFAULT_REGION")
    except EndpointConnectionError as error:
        _die(f"cannot reach AWS endpoint: {error}")
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in REJECTED_CREDENTIALS:
            _die(f"AWS rejected the credentials ({code}): refresh them and try again")
        raise
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:  # end of input at a prompt (Typer turns Ctrl-C into status 130, handled above)
        _die("aborted")
    except typer.TyperException as error:  # usage errors (unknown command, bad option) with standalone_mode=False
        message = error.format_message() if hasattr(error, "format_message") else str(error)
        _die(message.replace("\n", " "))


def _die(message: str) -> None:
    print(f"error: {safe_text(message)}", file=sys.stderr)  # one line, whatever a name from the bucket holds
    sys.exit(2)
