"""Issue 13: the layering (core imports no view), trajectory aggregations in core, the op of
each sub-call, logging (RLM.log_level / --log-level), %rlm sub-commands parsed by
magic_arguments, and the CLI's options generated from the RLM traits."""

from __future__ import annotations

import ast
import logging
import pathlib

import pytest
from conftest import repl
from IPython.core.error import UsageError

from rlm_jupyter import logs
from rlm_jupyter.cli import TRAIT_OPTIONS, build_parser, main
from rlm_jupyter.core import events as ev
from rlm_jupyter.core.trajectory import Trajectory
from rlm_jupyter.rlm import RLM
from rlm_jupyter.settings import RLMSettings

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "rlm_jupyter"


def _imports(path: pathlib.Path) -> set[str]:
    """Modules ``path`` imports (relative imports resolved against rlm_jupyter), anywhere in it."""
    parts = ["rlm_jupyter", *path.relative_to(PACKAGE).with_suffix("").parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_core_imports_nothing_from_lm_environment_views_or_the_package_top():
    upper = ("rlm_jupyter.lm", "rlm_jupyter.environment", "rlm_jupyter.jupyter", "rlm_jupyter.rlm",
             "rlm_jupyter.result", "rlm_jupyter.session", "rlm_jupyter.notebook_io", "rlm_jupyter.cli")
    for path in sorted((PACKAGE / "core").glob("*.py")):
        bad = sorted(m for m in _imports(path) if m.startswith(upper))
        assert not bad, f"{path.name} imports {bad}"


def test_notebook_export_and_sanitizer_do_not_import_the_views():
    for name in ("notebook_io.py", "safe_html.py", "result.py"):
        bad = sorted(m for m in _imports(PACKAGE / name) if m.startswith("rlm_jupyter.jupyter"))
        assert not bad, f"{name} imports {bad}"


def test_rlm_query_at_the_depth_limit_carries_its_own_op_and_aggregations_live_in_core(scripted):
    sub = scripted(lambda msgs: "plain")
    root = scripted([repl("print(rlm_query('hello'))\nprint(llm_query('hi'))"), "FINAL(x)"])
    res = RLM(model=root, sub_model=sub, max_depth=1).completion("q", "ctx")
    traj = res.trajectory
    assert traj.subcall_ops() == {"0.s1": "rlm_query", "0.s2": "llm_query"}
    starts = [e.data["op"] for e in traj.events if e.kind == ev.SUBCALL_STARTED]
    assert starts == ["rlm_query", "llm_query"]
    it = traj.iterations[0]
    assert traj.iteration_usage(it).calls == 1 + 2  # the root call and its two sub-calls
    assert traj.descendant_usage("0").calls == traj.usage().calls == 4
    start, end = traj.iteration_times("0")[1]
    assert 0 <= start <= end
    # a reloaded trajectory gives the same ops (the op is in the event)
    assert Trajectory.from_events(traj.events).subcall_ops() == traj.subcall_ops()


def test_log_level_trait_shows_records_on_stderr_and_is_quiet_by_default(capsys):
    log = logging.getLogger("rlm_jupyter.lm")
    try:
        RLM()
        log.warning("quiet-by-default")
        assert "quiet-by-default" not in capsys.readouterr().err
        rlm = RLM(log_level="info")
        assert rlm.log.name == "rlm_jupyter.rlm"
        log.info("now-shown")
        assert "[rlm_jupyter.lm INFO] now-shown" in capsys.readouterr().err
        rlm.log_level = ""
        log.warning("quiet-again")
        assert "quiet-again" not in capsys.readouterr().err
    finally:
        logs.set_level("")
    with pytest.raises(Exception, match="log_level"):
        RLM(log_level="loud")


def test_log_level_from_config_as_percent_config_sets_it(capsys):
    from traitlets.config import Config

    c = Config()
    c.RLM.log_level = "DEBUG"
    try:
        RLM(config=c)
        logging.getLogger("rlm_jupyter.core").debug("from-config")
        assert "from-config" in capsys.readouterr().err
    finally:
        logs.set_level("")


@pytest.fixture
def ip():
    from IPython.testing import globalipapp

    globalipapp.start_ipython()
    shell = globalipapp.get_ipython()  # after the first start, the shell itself
    shell.run_line_magic("load_ext", "rlm_jupyter")
    return shell


@pytest.mark.parametrize(
    "line,message",
    [("frobnicate", "unknown command 'frobnicate'; use 'runs', 'show N'"), ("show", "which run"),
     ("show 'unclosed", "No closing quotation"),
     ("show run.jsonl many", "invalid int value: 'many'"), ("runs extra", "unrecognized arguments: extra")],
)
def test_rlm_line_magic_subcommands_are_parsed_with_one_line_errors(ip, line, message):
    with pytest.raises(UsageError, match=message) as exc:
        ip.run_line_magic("rlm", line)
    assert str(exc.value).startswith("%rlm") and "\n" not in str(exc.value)


def test_rlm_line_magic_help_lists_every_subcommand(ip):
    doc = ip.find_line_magic("rlm").__doc__
    for cmd in ("runs", "show", "models", "config", "close", "stop"):
        assert cmd in doc


def test_cli_options_come_from_the_traits():
    run = next(a for a in build_parser()._subparsers._group_actions[0].choices.values())
    options = {a.dest: a for a in run._actions}
    traits = RLMSettings.class_traits()
    for name, names in TRAIT_OPTIONS:
        action = options[name]
        assert action.option_strings == list(names)
        assert traits[name].help in action.help.replace("%%", "%")
        shown = traits[name].default_value
        assert f"default: {shown if shown not in ('', None) else 'unset'}" in action.help
    assert "--log-level" in options["log_level"].option_strings


def test_cli_log_level_option_is_validated_by_the_trait(tmp_path, capsys):
    ctx = tmp_path / "c.txt"
    ctx.write_text("abc")
    with pytest.raises(SystemExit) as exc:
        main(["run", "--context", str(ctx), "--query", "q", "-m", "scripted/never-called", "--log-level", "loud"])
    assert exc.value.code == 2 and "--log-level" in capsys.readouterr().err
