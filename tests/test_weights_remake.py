"""The cpu-diet weights that ship are the ones their cards describe, and a card's command remakes them.

Issue 27's acceptance: the four cpu-diet weights were made on one budget (``budget_outer_steps``
equal in every card), each card records its held-out meta-validation loss, the shipped
``theta.state`` matches the sha256 its optimizer spec pins, and the command a card gives
is deterministic: run twice with its budget shortened, it writes bit-identical checkpoints.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from celo_bench import fileio
from celo_bench.cli import app
from celo_bench.suite import load_registry

WEIGHTS = Path(__file__).resolve().parents[1] / "celo_bench" / "weights"
CPU_DIET = ["celo_cpu_diet", "rnn_mlp_lopt_cpu_diet", "adafac_mlp_lopt_cpu_diet", "velo_s_cpu_diet"]


def _card(name: str) -> dict:
    return json.loads((WEIGHTS / name / "card.json").read_text())


@pytest.mark.parametrize("name", CPU_DIET)
def test_shipped_weights_match_their_specs_sha256(name):
    spec = load_registry().optimizer(name)
    state = WEIGHTS / name / "theta.state"
    assert fileio.sha256_file(state) == spec.checkpoint["sha256"] == _card(name)["sha256"]


def test_the_four_cpu_diet_weights_were_made_on_one_budget():
    cards = {name: _card(name) for name in CPU_DIET}
    budgets = {name: card["budget_outer_steps"] for name, card in cards.items()}
    assert len(set(budgets.values())) == 1 and min(budgets.values()) >= 2000, budgets
    for name, card in cards.items():
        assert card["preset"] == "cpu" and card["seed"] == 0, name
        assert 0 < card["meta_validation_loss"] < 20, name  # scored; 20 is the NaN stand-in
        assert "--select-best" in card["command"], name


def test_specs_and_card_pages_say_what_their_cards_say():
    """``scripts/ship_cpu_diet.py --check``: each spec's sha256, meta_training and make, and card.md, are the card's."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "ship_cpu_diet.py"
    res = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    for name in CPU_DIET:
        card = _card(name)
        page = (WEIGHTS / name / "card.md").read_text()
        assert f"budget {card['budget_outer_steps']} outer steps run in all" in page
        assert ("Above the target" in page) == (card["meta_validation_loss"] > 1.1513), name


def _shortened(command: str, out: Path, outer_iterations: int) -> list[str]:
    """The card's command line as CLI arguments: budget cut, output in `out`, not installed.

    Selection (``--select-best``) scores checkpoints at the 2,000-step validation horizon and
    does not change the checkpoints themselves, so it is dropped too.
    """
    argv = shlex.split(command)
    assert argv[:2] == ["celo-bench", "meta-train"], command
    args, i, cut = ["meta-train"], 2, {"--outer-iterations": str(outer_iterations), "--out": str(out)}
    while i < len(argv):
        a = argv[i]
        if a in ("--install", "--select-best"):
            i += 1
            continue
        if a in cut:
            i += 2
            continue
        args.append(a)
        i += 1
    return args + [x for kv in cut.items() for x in kv]


@pytest.mark.slow
def test_a_cards_command_remakes_bit_identical_checkpoints(tmp_path):
    """AdaFac-MLP-LOpt's card (the cheapest step), 3 outer steps, twice: the same bytes."""
    card = _card("adafac_mlp_lopt_cpu_diet")
    states = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        res = CliRunner().invoke(app, _shortened(card["command"], out, 3))
        assert res.exit_code == 0, res.output
        states.append(out / "theta.state")
        assert json.loads((out / "card.json").read_text())["budget_outer_steps"] == 3
    assert states[0].read_bytes() == states[1].read_bytes()
    first = sorted((tmp_path / "a" / "checkpoints").glob("*/theta.state"))
    assert first and all(p.read_bytes() == (tmp_path / "b" / p.relative_to(tmp_path / "a")).read_bytes()
                         for p in first)
