"""``prefloop simulate``: simulated labelers against a running server, through its REST API."""

from __future__ import annotations

import json
import random
from typing import Annotated

import typer

SIMULATE_HELP = """Act as many labelers through the REST API: rehearse a project,
dry-run the loop, load-test the labeling API.

\b
Each labeler repeats: GET /api/v1/tasks/next?kind=K for each kind of
--kinds in turn, fill the task, POST /api/v1/tasks/{id}/submission.
Labelers take turns one task at a time (or act at once with
--concurrency) until no labeler is offered a task (with --wait-s: until
nothing new came for that long) or --max-tasks submissions were made.

\b
--tokens FILE: one labeler per line, "TOKEN" or "TOKEN BEHAVIOUR"
("-" reads stdin; blank lines and lines starting with # are skipped).
Tokens: `prefloop tokens create USER` for users with the labeler role.
  preference  rank by the preference function through noise (default)
  random      a careless labeler: random order, random 1-7 scores
  first       a lazy labeler: submits the outputs in the order shown

\b
--preference MODULE:FUNCTION, path/to/file.py:FUNCTION, or a shipped
name (length, brevity, keyword, sentiment, polite; in the module
app.simulation.preferences). It is called as FUNCTION(prompt, text)
with the prompt's text and one output's text and returns a number:
higher is better. It may return (number, ["flag", ...]) to tick
metadata flags (e.g. hallucination, fails_to_follow). Only the order
of the numbers within one task matters.

\b
What a preference labeler does on each kind:
  ranking, evaluation: order the outputs by the preference with
    Gaussian noise on their ranks, the noise solved per task so that
    two such labelers agree on --agreement of the output pairs
    (expected); identical texts tied; Likert 6 (best) down to 2
    (worst); the flags the function returns.
  demonstration: write the candidate answer (built from the prompt's
    words, of varied length and tone) the preference scores highest.

\b
Prints a summary per labeler (--json: as JSON). Exit codes:
  0  done: nothing left for the labelers, or --max-tasks reached
  1  the server failed or could not be reached
  2  bad input: an option, the token file, a preference function that
     fails or returns a non-number, a token the server refuses"""


def simulate_command(
    base_url: Annotated[
        str, typer.Option("--base-url", help="The server, e.g. http://127.0.0.1:8000.")
    ],
    tokens: Annotated[
        str, typer.Option("--tokens", help="File of labeler tokens, one per line ('-': stdin).")
    ],
    preference: Annotated[
        str,
        typer.Option("--preference", help="MODULE:FUNCTION, file.py:FUNCTION or a shipped name."),
    ] = "keyword",
    agreement: Annotated[
        float,
        typer.Option(
            "--agreement", help="Expected share of output pairs two labelers order alike (0.5-1)."
        ),
    ] = 0.73,
    kinds: Annotated[
        str, typer.Option("--kinds", help="Task kinds to take, in this order of preference.")
    ] = "ranking,evaluation,demonstration",
    max_tasks: Annotated[
        int | None, typer.Option("--max-tasks", help="Stop after this many submissions in all.")
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Repeatable labeler choices (default: random).")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Labelers acting at the same time.")
    ] = 1,
    wait_s: Annotated[
        float,
        typer.Option("--wait-s", help="Keep polling until no task came for this many seconds."),
    ] = 0.0,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="HTTP timeout.")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    import httpx

    from app.simulation import SimulatedLabeler, Simulation, SimulationError, make_behaviour
    from app.simulation.loading import load_preference, read_tokens

    def fail(message: str, code: int) -> None:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code)

    if not 0.5 <= agreement <= 1.0:
        fail(f"--agreement must be between 0.5 and 1, got {agreement}", 2)
    if concurrency < 1:
        fail("--concurrency must be at least 1", 2)
    if max_tasks is not None and max_tasks < 0:
        fail("--max-tasks must not be negative", 2)
    if wait_s < 0 or timeout_s <= 0:
        fail("--wait-s must be >= 0 and --timeout-s > 0", 2)
    if not base_url.startswith(("http://", "https://")):
        fail(f"--base-url must start with http:// or https://, got {base_url!r}", 2)
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()]
    clients: list[httpx.Client] = []
    try:
        lines = read_tokens(tokens)
        wanted = (
            load_preference(preference)
            if any(line.behaviour == "preference" for line in lines)
            else None
        )
        master = random.Random(seed)
        labelers = []
        for line in lines:
            client = httpx.Client(
                base_url=base_url.rstrip("/"),
                headers={"Authorization": f"Bearer {line.token}"},
                timeout=timeout_s,
            )
            clients.append(client)
            labelers.append(
                SimulatedLabeler(
                    client,
                    make_behaviour(line.behaviour, wanted, agreement),
                    random.Random(master.getrandbits(64)),
                )
            )
        summary = Simulation(labelers, kind_list, max_tasks, wait_s, concurrency).run()
    except SimulationError as exc:
        fail(str(exc), exc.exit_code)
    finally:
        for client in clients:
            client.close()
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
        return
    typer.echo(
        f"{summary.submitted} submissions by {len(summary.labelers)} labelers in "
        f"{summary.elapsed_s:.1f}s (stopped: {summary.stopped}); request latency p50 "
        f"{summary.latency_ms['p50']:.0f} ms, p95 {summary.latency_ms['p95']:.0f} ms"
    )
    typer.echo("labeler\tbehaviour\tranking\tevaluation\tdemonstration\tconflicts")
    for row in summary.labelers:
        typer.echo(
            f"{row['name']}\t{row['behaviour']}\t{row['ranking']}\t{row['evaluation']}\t"
            f"{row['demonstration']}\t{row['conflicts']}"
        )
