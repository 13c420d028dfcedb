"""Mutation testing of deft's core with cosmic-ray (``make mutate``; not part of CI).

For each group of ``mutation/modules.toml`` this copies ``src/``, ``tests/`` and ``pyproject.toml``
into ``build/mutation/GROUP/`` (the working tree is never touched), lets cosmic-ray list the mutants
of the group's modules into ``build/mutation/GROUP/session.sqlite``, checks that the group's tests
pass on the unmutated copy, then applies each mutant in turn and runs the group's tests in a child
forked from a warm process (``mutation/forkserver.py``). The report ``build/mutation/report.md``
gives the score per module and every surviving mutant, matched against the equivalent mutants
recorded in ``mutation/equivalent.toml``.

    python mutation/run.py                  # every group
    python mutation/run.py metrics stats    # some groups
    python mutation/run.py --jobs 2         # every group, two at a time (one process per group, each
                                            # on one core: its tests run single-threaded)
    python mutation/run.py --changed        # only the groups whose modules changed since their session
    python mutation/run.py --survivors metrics   # re-test only the survivors of the last run
                                                 # (with the current tests/), e.g. after adding a test
    python mutation/run.py --resume fused_gate   # continue an interrupted run (its pending mutants,
                                                 # with the current tests/ and test selection)
    python mutation/run.py --report         # rebuild the report from the stored sessions
    python mutation/run.py --list           # mutant counts per group, nothing run

The sessions stay readable by cosmic-ray's own tools (``cr-report``, ``cr-html``).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "mutation"
BUILD = ROOT / "build" / "mutation"
FORKSERVER = HERE / "forkserver.py"
PYTEST_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=", "-W", "ignore"]

sys.path.insert(0, str(HERE))
from forkserver import decided_stage  # noqa: E402
from killers import KillerMemory, first_stage_of, killer_of, mark_checked, mark_first_stage  # noqa: E402
from report import (annotation_spans, diff_row, in_spans, load_equivalent, match_equivalent,  # noqa: E402
                    replace_docs_block, write_report)


def load_groups(path: Path = HERE / "modules.toml") -> dict:
    """Groups of ``modules.toml`` with the defaults filled in."""
    data = tomllib.loads(path.read_text())
    defaults = data.get("defaults", {})
    groups = {}
    for name, group in data["groups"].items():
        merged = {**defaults, **group}
        # a test file named in the selection but not written yet is left out (kill-tests are added
        # as survivors show up); a node id or option is kept as it is
        merged["tests"] = [t for t in merged["tests"] if "::" in t or t.startswith("-") or (ROOT / t).exists()]
        missing = [m for m in merged["modules"] if not (ROOT / m).is_file()]
        if missing:
            raise SystemExit(f"mutation/modules.toml: group '{name}': no such module {missing[0]}")
        groups[name] = merged
    return groups


def _fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _group_fingerprint(group: dict) -> str:
    return _fingerprint([ROOT / m for m in group["modules"]])


def _stamp_matches(name: str, group: dict) -> bool:
    """Whether group ``name``'s stored session was made from its modules as they are now (same bytes)."""
    stamp = BUILD / name / "modules.sha"
    return stamp.exists() and stamp.read_text().strip() == _group_fingerprint(group)


def is_current(name: str, group: dict) -> bool:
    """Whether group ``name`` has a finished session of its modules as they are now (same bytes),
    so that a new run would list and test the same mutants again (finished: no mutant pending, no
    first-stage kill left unchecked)."""
    session = BUILD / name / "session.sqlite"
    if not (session.exists() and _stamp_matches(name, group)):
        return False
    from cosmic_ray.work_db import WorkDB, use_db

    with use_db(str(session), WorkDB.Mode.open) as db:
        return not any(True for _ in db.pending_work_items) and not unchecked_first_stage_kills(db)


def prepare(name: str, group: dict, keep_session: bool) -> Path:
    """The group's working copy (``src/`` and ``tests/`` refreshed from the working tree)."""
    work = BUILD / name
    if not keep_session and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for sub in ("src", "tests"):
        if (work / sub).exists():
            shutil.rmtree(work / sub)
        shutil.copytree(ROOT / sub, work / sub, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(ROOT / "pyproject.toml", work / "pyproject.toml")
    for cache in work.rglob("__pycache__"):
        shutil.rmtree(cache)
    return work


class Server:
    """The fork server of one group, running in the group's working copy."""

    def __init__(self, work: Path, preload: list[str], tests: list[str], warm_compile: bool = False):
        self.socket = str(work / "forkserver.sock")
        # one thread, and torch.compile's work in-process (no worker pool, which would not survive a fork)
        env = dict(os.environ, PYTHONPATH=str(work / "src"), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   TOKENIZERS_PARALLELISM="false", TORCHINDUCTOR_COMPILE_THREADS="1")
        warm = ["--warm-compile"] if warm_compile else []
        self.proc = subprocess.Popen(
            [sys.executable, str(FORKSERVER), "serve", self.socket, "--preload", ",".join(preload), *warm,
             "--", *tests],
            cwd=work, env=env, stdout=subprocess.PIPE, text=True,
        )
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("mutation: the fork server did not start (see the error above)")

    def command(self, work: Path, tests: list[str], modules: list[str], baseline: bool = False,
                first: list[str] = ()) -> str:
        """The client command running ``tests``: the unmutated ``baseline`` records each test's
        duration, a mutant's run takes the slow ones last (``mutation/slowlast.py``). With
        ``first`` (node ids: the likely killers, ``mutation/killers.py``) those run first, together
        in one session, and ``tests`` only if none of them fails."""
        order = ["-p", "slowlast", "--record-durations" if baseline else "--slow-last", str(work / "durations.json")]
        stages = [*PYTEST_ARGS, *first, "--then"] if first else []
        return self._client(work, modules, [*stages, *PYTEST_ARGS, *order, *tests])

    def first_stage_command(self, work: Path, first: list[str], modules: list[str]) -> str:
        """The client command running only the first stage ``first`` (as ``command`` runs it)."""
        return self._client(work, modules, [*PYTEST_ARGS, *first])

    def _client(self, work: Path, modules: list[str], stages: list[str]) -> str:
        mutated = ",".join(str(work / m) for m in modules)
        args = [sys.executable, str(FORKSERVER), "client", self.socket, str(work), mutated, "--", *stages]
        return " ".join(shlex.quote(a) for a in args)

    def close(self) -> None:
        """Ask the server to stop; one that has not exited a minute later (a loaded machine, a child
        still running) is killed, so the next group still runs."""
        subprocess.run([sys.executable, str(FORKSERVER), "stop", self.socket], check=False)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _definition_lines(path: Path, names: list[str]) -> list[range]:
    """Line ranges of the functions/methods ``names`` ("func" or "Class.method") in ``path``."""
    tree = ast.parse(path.read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = range(node.lineno, node.end_lineno + 1)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"{node.name}.{item.name}"] = range(item.lineno, item.end_lineno + 1)
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(f"mutation/modules.toml: {path}: no definition '{missing[0]}'")
    return [found[n] for n in names]


def init_session(work: Path, group: dict) -> None:
    """List the group's mutants into a fresh session and mark the filtered ones skipped."""
    from cosmic_ray.commands import init
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    excluded = re.compile("|".join(f"(?:{e})" for e in group.get("exclude-operators", ())) or "(?!)")
    ranges = {}
    if group.get("definitions"):
        for module in group["modules"]:
            ranges[module] = _definition_lines(work / module, group["definitions"])
    spans = {m: annotation_spans(work / m) for m in group["modules"]}
    equivalent = load_equivalent(HERE / "equivalent.toml")
    with use_db(str(work / "session.sqlite"), WorkDB.Mode.create) as db:
        init([Path(m) for m in group["modules"]], db, {})
        for item in db.pending_work_items:
            m = item.mutations[0]
            line = m.start_pos[0]
            why = None
            if excluded.match(m.operator_name):
                why = "Filtered operator"
            elif in_spans(spans[str(m.module_path)], m.start_pos):
                why = "Inside a type annotation (never evaluated)"
            elif str(m.module_path) in ranges and not any(line in r for r in ranges[str(m.module_path)]):
                why = "Outside the selected definitions"
            if why:
                db.set_result(item.job_id, WorkResult(output=why, worker_outcome=WorkerOutcome.SKIPPED))
                continue
            recorded = recorded_equivalent(work, m, equivalent)
            if recorded:
                db.set_result(item.job_id, recorded)


RECORDED = "not run: recorded equivalent in mutation/equivalent.toml"


def mutant_diff(work: Path, mutation) -> str:
    """The unified diff of one mutation of a module under ``work``, computed in memory."""
    import cosmic_ray.plugins
    from cosmic_ray.mutating import _make_diff, mutate_code

    path = work / mutation.module_path
    code = path.read_text()
    operator = cosmic_ray.plugins.get_operator(mutation.operator_name)(**getattr(mutation, "operator_args", {}))
    try:
        mutated = mutate_code(code, operator, mutation.occurrence)
    except Exception:  # noqa: BLE001 - cosmic-ray cannot apply some mutants (e.g. ExceptionReplacer on `except a.B`);
        return ""      # the run reports those as errors
    return "" if mutated is None else "\n".join(_make_diff(code, mutated, mutation.module_path))


def recorded_equivalent(work: Path, mutation, equivalent: list[dict]):
    """A survived ``WorkResult`` (with its diff) for a mutant that ``equivalent.toml`` records, else
    None: such a mutant survives every test by its recorded proof, so running its whole test
    selection (the most expensive outcome) tells nothing; the report counts it as equivalent."""
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    diff = mutant_diff(work, mutation)
    if not diff:
        return None
    if not match_equivalent(equivalent, diff_row(str(mutation.module_path), mutation.operator_name, diff)):
        return None
    return WorkResult(output=RECORDED, diff=diff, test_outcome=TestOutcome.SURVIVED,
                      worker_outcome=WorkerOutcome.NORMAL)


def execute(work: Path, server: Server, group: dict, survivors_only: bool) -> None:
    """Run the pending mutants (or re-run the survivors) of the session in ``work``: each first
    against the tests that killed its neighbours, then (if none fails) its group's whole
    selection; at the end, check the first-stage kills on the unmutated code
    (``check_first_stage_kills``)."""
    import attrs
    from cosmic_ray.mutating import mutate_and_test
    # cosmic-ray sets PYTHONDONTWRITEBYTECODE for the client only; the fork server keeps the
    # bytecode of unmutated modules and drops the mutated module's before every run
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    with use_db(str(work / "session.sqlite"), WorkDB.Mode.open) as db:
        if survivors_only:  # (mutants inside annotations or recorded equivalent: not worth a re-run)
            spans: dict = {}
            equivalent = load_equivalent(HERE / "equivalent.toml")
            todo = []
            for item, result in db.completed_work_items:
                m = item.mutations[0]
                path = str(m.module_path)
                if path not in spans:
                    spans[path] = annotation_spans(work / path)
                if result.test_outcome != TestOutcome.SURVIVED or in_spans(spans[path], m.start_pos):
                    continue
                if not match_equivalent(equivalent, diff_row(path, m.operator_name, result.diff or "")):
                    todo.append(item)
        else:
            todo = list(db.pending_work_items)
        todo.sort(key=lambda it: (str(it.mutations[0].module_path), it.mutations[0].start_pos,
                                  it.mutations[0].operator_name, it.mutations[0].occurrence))
        memory = KillerMemory()
        timeout = float(group["timeout"])
        # options in a selection (-k, -m) would not reach a first stage of bare node ids
        likely_killers = not any(t.startswith("-") for t in group["tests"])
        start = time.monotonic()
        for i, item in enumerate(todo, 1):
            m = item.mutations[0]
            first = memory.candidates(m.module_path, m.start_pos[0]) if likely_killers else []
            command = server.command(work, group["tests"], group["modules"], first=first)
            result = mutate_and_test(item.mutations, command, timeout)
            output = result.output or ""
            killed = result.test_outcome == TestOutcome.KILLED
            if killed and decided_stage(output) == (1, 2):
                result = attrs.evolve(result, output=mark_first_stage(output, first))
            db.set_result(item.job_id, result)
            killer = killer_of(output) if killed else None
            if killer and "::" in killer:  # a test of the selection (a collection error names a whole file)
                memory.record(m.module_path, m.start_pos[0], killer)
            outcome = result.test_outcome.value if result.test_outcome else result.worker_outcome.value
            print(f"[{i}/{len(todo)} {time.monotonic() - start:6.0f}s] {outcome:11s} "
                  f"{m.module_path}:{m.start_pos[0]} {m.operator_name.removeprefix('core/')}", flush=True)
        check_first_stage_kills(work, server, group, db)


def unchecked_first_stage_kills(db) -> dict[tuple[str, ...], list]:
    """``{first stage: [(item, result), ...]}`` of the session's first-stage kills whose stage has
    not yet been run on the unmutated code (``mutation/killers.py``)."""
    found: dict[tuple[str, ...], list] = {}
    for item, result in db.completed_work_items:
        first = first_stage_of(result.output or "")
        if first is not None:
            found.setdefault(tuple(first), []).append((item, result))
    return found


def check_first_stage_kills(work: Path, server: Server, group: dict, db) -> None:
    """Run each first stage that killed a mutant once on the (again unmutated) code: where it passes,
    its kills are marked checked; where it fails (a test failing after another one's side effect),
    its mutants are run again on the whole selection."""
    import attrs
    from cosmic_ray.mutating import mutate_and_test

    timeout = float(group["timeout"])
    command = server.command(work, group["tests"], group["modules"])
    for first, entries in unchecked_first_stage_kills(db).items():
        if passes_unmutated(server.first_stage_command(work, list(first), group["modules"]), timeout):
            for item, result in entries:
                db.set_result(item.job_id, attrs.evolve(result, output=mark_checked(result.output)))
            continue
        print(f"== the first stage {list(first)} fails on the unmutated code: its {len(entries)} mutants run "
              "again on the whole selection", flush=True)
        for item, _ in entries:
            db.set_result(item.job_id, mutate_and_test(item.mutations, command, timeout))


def passes_unmutated(command: str, timeout: float) -> bool:
    """Whether the client ``command`` passes (exit status 0) within ``timeout`` seconds."""
    try:
        return subprocess.run(shlex.split(command), capture_output=True, timeout=timeout).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def run_group(name: str, group: dict, survivors_only: bool, resume: bool = False) -> None:
    fingerprint = _group_fingerprint(group)
    work = BUILD / name
    if survivors_only or resume:
        if not (work / "session.sqlite").exists():
            raise SystemExit(f"mutation: no session for group '{name}' yet; run it without --survivors/--resume first")
        if not _stamp_matches(name, group):
            raise SystemExit(f"mutation: the modules of group '{name}' changed since its last run; "
                             "run it without --survivors/--resume")
    work = prepare(name, group, keep_session=survivors_only or resume)
    os.chdir(work)  # cosmic-ray mutates module paths relative to the working directory
    server = Server(work, group["preload"], group["tests"], bool(group.get("warm-compile")))
    try:
        command = server.command(work, group["tests"], group["modules"])
        print(f"== {name}: baseline (unmutated tests)", flush=True)
        # twice: in the given order (recording each test's duration), then in the mutants' order
        # (slow tests last), so that a test depending on another's side effects can't kill mutants
        for order, cmd in (("given", server.command(work, group["tests"], group["modules"], baseline=True)),
                           ("slow-last", command)):
            rc = subprocess.run(shlex.split(cmd), capture_output=True, text=True)
            if rc.returncode != 0:
                sys.stdout.write(rc.stdout[-4000:])
                raise SystemExit(f"mutation: group '{name}': the tests fail without any mutation, in the {order} "
                                 f"order (exit {rc.returncode}); fix them first")
        if not (survivors_only or resume):
            init_session(work, group)
            (work / "modules.sha").write_text(fingerprint + "\n")
        execute(work, server, group, survivors_only)
    finally:
        server.close()
        os.chdir(ROOT)


def run_in_parallel(names: list[str], jobs: int, mode: list[str]) -> list[str]:
    """Run each group in its own ``run.py`` process, ``jobs`` at a time (largest first, so the
    longest group starts at once); each logs to ``build/mutation/GROUP.log``. The groups
    that failed (e.g. their tests fail unmutated)."""
    from concurrent.futures import ThreadPoolExecutor

    sizes = {name: len(group_items(name)) for name in names}

    def one(name: str) -> int:
        log = BUILD / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            rc = subprocess.run(group_process_args(name, mode), stdout=out, stderr=subprocess.STDOUT).returncode
        print(f"== {name}: {'done' if rc == 0 else f'failed (exit {rc})'}; log {log}", flush=True)
        return rc

    order = sorted(names, key=lambda n: -sizes[n])
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        codes = dict(zip(order, pool.map(one, order)))
    return [n for n in names if codes[n] != 0]


def group_process_args(name: str, mode: list[str]) -> list[str]:
    """The command line of group ``name``'s own process under ``--jobs``; ``--no-report``: another
    group's copy may hold a mutant right now, so the parent writes the report once all are done."""
    return [sys.executable, __file__, *mode, "--no-report", name]


def group_items(name: str) -> list:
    """The mutants cosmic-ray lists for group ``name`` (before the filters applied when run)."""
    from cosmic_ray.commands.init import _all_work_items

    group = load_groups()[name]
    excluded = re.compile("|".join(f"(?:{e})" for e in group.get("exclude-operators", ())) or "(?!)")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return [it for it in _all_work_items([Path(m) for m in group["modules"]], {})
                if not excluded.match(it.mutations[0].operator_name)]
    finally:
        os.chdir(cwd)


def count(name: str) -> None:
    print(f"{name}: {len(group_items(name))} mutants (before the definitions filter)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("groups", nargs="*", help="groups of mutation/modules.toml (default: all)")
    parser.add_argument("--survivors", action="store_true", help="re-test only the last run's survivors")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run (pending mutants only)")
    parser.add_argument("--changed", action="store_true",
                        help="skip the groups whose stored session is finished and whose modules are unchanged")
    parser.add_argument("--report", action="store_true", help="only rebuild build/mutation/report.md")
    parser.add_argument("--list", action="store_true", help="count the mutants of each group")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N groups at a time, each in its own process (default 1; use the number of cores)")
    parser.add_argument("--no-report", action="store_true",
                        help="don't rebuild the report after the run (each group's process under --jobs: the "
                             "parent writes it once all groups are done)")
    parser.add_argument("--docs", action="store_true",
                        help="also write the scores and survivors into docs/testing.md (between its markers)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the fork server is stopped too
    groups = load_groups()
    unknown = [g for g in args.groups if g not in groups]
    if unknown:
        parser.error(f"unknown group '{unknown[0]}'; groups: {', '.join(groups)}")
    chosen = args.groups or list(groups)
    if args.changed and not (args.survivors or args.resume or args.report):
        current = [name for name in chosen if is_current(name, groups[name])]
        if current:
            print(f"mutation: up to date, not run: {', '.join(current)}", flush=True)
        chosen = [name for name in chosen if name not in current]
    if args.list:
        for name in chosen:
            count(name)
        return 0
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if not args.report and args.jobs > 1:
        mode = ["--survivors"] if args.survivors else ["--resume"] if args.resume else []
        failed = run_in_parallel(chosen, args.jobs, mode)
        if failed:
            print(f"mutation: these groups failed (see build/mutation/GROUP.log): {', '.join(failed)}")
    elif not args.report:
        for name in chosen:
            run_group(name, groups[name], args.survivors, args.resume)
    if args.no_report:
        return 0
    path = write_report(BUILD, groups, HERE / "equivalent.toml", ROOT)
    print(f"report: {path}")
    if args.docs:
        docs = ROOT / "docs" / "testing.md"
        docs.write_text(replace_docs_block(docs.read_text(), (BUILD / "docs_section.md").read_text()))
        print(f"docs: {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
