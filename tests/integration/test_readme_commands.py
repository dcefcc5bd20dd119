"""Every command the README (and the guides beside it) shows exists as written.

Reads README.md, docs/promotion.md and notebooks/README.md: every command of their ```bash blocks,
and inline `code` that starts like a command (make, python -m, mlflow run, spark-submit,
.venv/bin/...). Commands are inspected, never run (`make demo` and the e2e tests run them); the
only processes started are `--help` calls. For each simple command (split at ; && || | and
$(...)):

* ``make X [VAR=value]``: X is a target of the Makefile, VAR one of its variables;
* ``python -m module ...``: the module is importable and its ``--help`` lists every --flag and
  bare argument used (and a value among the flag's {choices}); ``python script.py``: the script exists;
* ``mlflow run . -e NAME -P k=v``: NAME is an entry point of MLproject that declares every k,
  ``--env-manager local`` is given (there is no conda), and ``mlflow run --help`` knows the options;
* ``spark-submit ... script.py args``: the spark-submit options exist, the script exists and
  accepts its arguments (as ``python -m`` above);
* any other program is installed (PATH or the venv);
* every path is in the repo, or in a git-ignored folder the tooling creates (.stack/, .cache/, ...);
* ``VAR=value`` prefixes and the README's configuration table name variables the code reads.

The README's MLflow entry-point table lists exactly MLproject's entry points and parameters.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration  # runs every documented command's --help in a subprocess

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = ["README.md", "docs/promotion.md", "notebooks/README.md"]
VENV_BIN = Path(sys.executable).parent
SHELL_BUILTINS = {"set", ".", "source", "export", "cd", "echo", "true", "unset"}
COMMAND_START = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:make|python3? -m|mlflow run|spark-submit|\.venv/bin/)\b")
SEPARATORS = {";", "&&", "||", "|", "&"}
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=")
PATH_LIKE = re.compile(r"^\.?[\w.-]+(?:/[\w.*-]+)+/?$")
KNOWN_EXTERNAL_VARIABLES = {"PGPASSWORD"}  # libpq's, not the project's
CODE_FOLDERS = ["fraudops", "simulator", "devstack", "streaming", "pipelines", "features", "monitoring", "expectations", "docker"]


# --- extracting commands ------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """One simple command as a document shows it."""

    where: str  # document:line
    env: tuple[str, ...]  # VAR=value prefixes (names)
    argv: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.argv)}"


def logical_lines(document: str) -> list[tuple[int, str]]:
    """(line number, text) of each shell line: bash blocks (continuations joined) and command-like inline code."""
    lines = (ROOT / document).read_text().splitlines()
    found: list[tuple[int, str]] = []
    in_block, language, pending, start = False, "", "", 0
    for number, line in enumerate(lines, start=1):
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            in_block, language = (not in_block), fence.group(1)
            continue
        if in_block:
            if language not in ("bash", "sh", "shell"):
                continue
            if not pending:
                start = number
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
            else:
                pending += line
                if quotes_closed(pending):
                    found.append((start, pending.strip()))
                    pending = ""
                else:
                    pending += "\n"  # a quoted string goes on
        else:
            found += [(number, variant) for span in re.findall(r"`([^`\n]+)`", line)
                      if COMMAND_START.match(span) and "<" not in span for variant in alternatives(span)]
    return found


def alternatives(span: str) -> list[str]:
    """Inline prose writes choices as ``--action list|active``: one command per choice."""
    words = span.split()
    choice = next((i for i, word in enumerate(words) if re.fullmatch(r"[^|]+(\|[^|]+)+", word)), None)
    if choice is None:
        return [span]
    return [variant for option in words[choice].split("|")
            for variant in alternatives(" ".join([*words[:choice], option, *words[choice + 1:]]))]


def quotes_closed(text: str) -> bool:
    try:
        shlex.split(text, comments=True)  # an apostrophe in a trailing `# comment` opens no quote
    except ValueError:  # "No closing quotation"
        return False
    return True


def split_commands(where: str, line: str) -> list[Command]:
    """The simple commands of one shell line ($(...) substitutions become commands of their own)."""
    commands: list[Command] = []
    for inner in SUBSTITUTION.findall(line):
        commands += split_commands(where, inner)
    lexer = shlex.shlex(SUBSTITUTION.sub("__substitution__", line), posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    current: list[str] = []
    for token in [*lexer, ";"]:
        if token in SEPARATORS:
            leading = 0
            while leading < len(current) and ASSIGNMENT.match(current[leading]):
                leading += 1
            env = tuple(ASSIGNMENT.match(t).group(1) for t in current[:leading])
            argv = tuple(current[leading:])
            if argv:
                commands.append(Command(where, env, argv))
            current = []
        else:
            current.append(token)
    return commands


def document_commands() -> list[Command]:
    return [command for document in DOCUMENTS for number, line in logical_lines(document)
            for command in split_commands(f"{document}:{number}", line)]


# --- what the repository offers -----------------------------------------------------------------
@functools.cache
def makefile_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\- ]+?)\s*:(?![=:])", line)
        if match and not line.startswith("\t"):
            targets.update(match.group(1).split())
    return targets


@functools.cache
def mlproject_entry_points() -> dict[str, set[str]]:
    entry_points = yaml.safe_load((ROOT / "MLproject").read_text())["entry_points"]
    return {name: set((spec or {}).get("parameters", {})) for name, spec in entry_points.items()}


@functools.cache
def help_text(*argv: str) -> str:
    """stdout+stderr of a --help call (PATH starts with the venv's bin, as under make)."""
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"{' '.join(argv)} exited {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout + done.stderr


@functools.cache
def ignored_folders() -> set[str]:
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return {line.strip().strip("/").removeprefix("./") for line in lines
            if line.strip() and not line.startswith("#") and "*" not in line}


@functools.cache
def project_source_text() -> str:
    files = [ROOT / "Makefile", *[p for folder in CODE_FOLDERS for p in (ROOT / folder).rglob("*.py")]]
    return "\n".join(p.read_text(errors="replace") for p in files)


def executable_available(program: str) -> bool:
    if program.startswith(".venv/bin/"):
        return (VENV_BIN / Path(program).name).exists()
    return (VENV_BIN / program).exists() or shutil.which(program) is not None


# --- the checks ---------------------------------------------------------------------------------
def path_problems(command: Command) -> list[str]:
    problems = []
    for token in command.argv[1:]:
        value = token.split("=", 1)[1] if ASSIGNMENT.match(token) else token
        if not PATH_LIKE.match(value) or "*" in value or value.startswith(("http", "models:")):
            continue
        if (ROOT / value).exists():
            continue
        if value.split("/")[0] in ignored_folders():
            continue  # created by the tooling (make setup / stack-up / demo), git-ignored
        problems.append(f"path {value} does not exist in the repository")
    return problems


def module_argument_problems(module: str, args: tuple[str, ...]) -> list[str]:
    """The module is importable and its --help lists every --flag and bare argument."""
    if importlib.util.find_spec(module) is None:
        return [f"python -m {module}: module not found"]
    text = help_text(sys.executable, "-m", module, "--help")
    problems, previous = [], ""
    for arg in args:
        choices = re.search(rf"{re.escape(previous)} \{{([^}}]+)\}}", text) if previous.startswith("--") else None
        if choices and not arg.startswith("-") and arg not in choices.group(1).split(","):
            problems.append(f"python -m {module}: {previous} {arg} is not one of {{{choices.group(1)}}}")
        if arg.startswith("-"):
            flag = arg.split("=", 1)[0]
            if flag not in text:
                problems.append(f"python -m {module}: {flag} is not an option of its --help")
        elif not previous.startswith("-") and not PATH_LIKE.match(arg) and arg != "__substitution__" \
                and arg not in text:
            problems.append(f"python -m {module}: argument {arg!r} is not in its --help")
        previous = arg if not (arg.startswith("-") and "=" in arg) else ""
    return problems


def make_problems(command: Command) -> list[str]:
    problems = []
    for arg in command.argv[1:]:
        variable = ASSIGNMENT.match(arg)
        if variable and not re.search(rf"\b{variable.group(1)}\b", (ROOT / "Makefile").read_text()):
            problems.append(f"make variable {variable.group(1)} is not used by the Makefile")
        elif not variable and not arg.startswith("-") and arg not in makefile_targets():
            problems.append(f"make target {arg!r} is not in the Makefile")
    return problems


def python_problems(command: Command) -> list[str]:
    args = command.argv[1:]
    if args[:1] == ("-m",) and len(args) >= 2:
        return module_argument_problems(args[1], args[2:])
    if args[:1] == ("-c",):
        return []
    if args and not (ROOT / args[0]).is_file():
        return [f"script {args[0]} does not exist"]
    return []


def mlflow_run_problems(command: Command) -> list[str]:
    args, problems = list(command.argv[2:]), []
    params, entry_point, env_manager, project = [], "main", None, None
    while args:
        arg = args.pop(0)
        if arg in ("-e", "--entry-point"):
            entry_point = args.pop(0)
        elif arg in ("-P", "--param-list"):
            params.append(args.pop(0).split("=", 1)[0])
        elif arg == "--env-manager":
            env_manager = args.pop(0)
        elif arg.startswith("-"):
            if arg.split("=", 1)[0] not in help_text(str(VENV_BIN / "mlflow"), "run", "--help"):
                problems.append(f"mlflow run does not know the option {arg}")
            if "=" not in arg and args and not args[0].startswith("-"):
                args.pop(0)
        else:
            project = arg
    if project != ".":
        problems.append(f"mlflow run of project {project!r}: the README's project is '.'")
    if env_manager != "local":
        problems.append("mlflow run needs --env-manager local here (there is no conda)")
    declared = mlproject_entry_points()
    if entry_point not in declared:
        return [*problems, f"entry point {entry_point!r} is not in MLproject"]
    problems += [f"entry point {entry_point!r} has no parameter {p!r}" for p in params if p not in declared[entry_point]]
    return problems


def spark_submit_problems(command: Command) -> list[str]:
    args = list(command.argv[1:])
    script = next((i for i, arg in enumerate(args) if arg.endswith(".py")), None)
    if script is None:
        return ["spark-submit without an application script"]
    problems = [f"spark-submit does not know the option {arg}" for arg in args[:script]
                if arg.startswith("--") and arg not in help_text(str(VENV_BIN / "spark-submit"), "--help")]
    path = Path(args[script])
    if not (ROOT / path).is_file():
        return [*problems, f"application script {path} does not exist"]
    return problems + module_argument_problems(".".join(path.with_suffix("").parts), tuple(args[script + 1:]))


def command_problems(command: Command) -> list[str]:
    program = command.argv[0]
    problems = path_problems(command)
    if program in SHELL_BUILTINS:
        return problems
    if not executable_available(program):
        return [*problems, f"program {program!r} is not installed (PATH or .venv/bin)"]
    name = Path(program).name
    if name == "make":
        problems += make_problems(command)
    elif re.fullmatch(r"python(3(\.\d+)?)?", name):
        problems += python_problems(command)
    elif name == "mlflow":
        if command.argv[1:2] == ("run",):
            problems += mlflow_run_problems(command)
        elif command.argv[1] not in help_text(str(VENV_BIN / "mlflow"), "--help"):
            problems.append(f"mlflow has no command {command.argv[1]!r}")
    elif name == "spark-submit":
        problems += spark_submit_problems(command)
    return problems


COMMANDS = document_commands()


def test_the_documents_show_commands():
    by_document = {d: [c for c in COMMANDS if c.where.startswith(d + ":")] for d in DOCUMENTS}
    assert all(by_document.values()), {d: len(c) for d, c in by_document.items()}
    programs = {Path(c.argv[0]).name for c in COMMANDS}
    assert {"make", "mlflow", "spark-submit", "psql"} <= programs, programs


@pytest.mark.parametrize("command", COMMANDS, ids=[f"{c.where}-{Path(c.argv[0]).name}" for c in COMMANDS])
def test_command_exists_as_written(command):
    assert command_problems(command) == [], str(command)


def test_variables_the_documents_set_are_read_by_the_code():
    readme = (ROOT / "README.md").read_text()
    configuration = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    table_variables = set(re.findall(r"^\|\s*(.+?)\s*\|", configuration, re.MULTILINE))
    names = {name for cell in table_variables for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}
    names |= {name for command in COMMANDS for name in command.env}
    unread = sorted(n for n in names - KNOWN_EXTERNAL_VARIABLES if not re.search(rf"\b{n}\b", project_source_text()))
    assert len(names) >= 10 and unread == [], unread


def test_readme_entry_point_table_matches_mlproject():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## MLflow entry points", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str]] = {}
    for name, parameters in re.findall(r"^\|\s*`([\w-]+)`\s*\|(.*)\|\s*$", section, re.MULTILINE):
        table[name] = set(re.findall(r"`(\w+)`", re.sub(r"\([^)]*\)", "", parameters)))
    declared = mlproject_entry_points()
    differences = {name: {"README": sorted(table.get(name, [])), "MLproject": sorted(declared.get(name, []))}
                   for name in table.keys() | declared.keys() if table.get(name) != declared.get(name)}
    assert differences == {}, "the README's entry-point table differs from MLproject"


@pytest.mark.parametrize("line, problem", [
    ("make no-such-target", "make target 'no-such-target'"),
    ("make demo NO_SUCH_VARIABLE=1", "make variable NO_SUCH_VARIABLE"),
    ("python -m pipelines.no_such_module", "module not found"),
    ("python -m pipelines.train --no-such-flag 1", "--no-such-flag is not an option"),
    ("python -m fraudops.db no-such-command", "argument 'no-such-command'"),
    ("python -m pipelines.registry --action no-such-action", "--action no-such-action is not one of"),
    ("mlflow run . -e no_such_entry --env-manager local", "entry point 'no_such_entry'"),
    ("mlflow run . -e train --env-manager local -P no_such_param=1", "has no parameter 'no_such_param'"),
    ("mlflow run . -e train -P data=x", "--env-manager local"),
    ("spark-submit --master 'local[2]' streaming/no_such_job.py", "does not exist"),
    ("no-such-program --help", "is not installed"),
    ("cat fraudops/no_such_file.py", "does not exist"),
])
def test_the_checker_names_what_is_missing(line, problem):
    problems = [p for command in split_commands("example", line) for p in command_problems(command)]
    assert any(problem in p for p in problems), problems
