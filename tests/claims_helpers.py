"""The claim annotations of the results READMEs, checked against the data they quote.

A number a README quotes from a replication is written ``NUMBER<!--section|what|metric[|verdict]-->``
(``section``: a regime, or a learning rate of evidence v2). ``what`` is an objective (``nll``,
``p``, ``cayley``, ``deft``) or ``Base`` for a mean, ``<objective>@<seed>`` for one seed's value,
``<objective>-nll`` for a paired difference to NLL over seeds (a written ``± HALF`` is its 95%
half-width, a written ``*`` / ``°`` its marker), ``probe`` for a field of the probe summary,
``family`` for the size of the section's corrected family (metric ``comparisons``), how many
survive the correction (``survive``) or are outside the noise uncorrected only (``uncorrected``);
and, where the section has per-problem tables, ``<objective>-nll@problems`` / ``<objective>-Base@problems``
for the per-problem bootstrap difference (percentage points) on the benchmark named by ``metric``,
``<objective>-nll@records`` for the bootstrap over held-out records of a content metric.
The optional verdict (``*``: survives the Holm correction, ``°``: outside the noise uncorrected
only, ``~``: within the noise) is checked on its own, also without a number before the comment,
where ``metric`` may be ``all`` (every tested metric of the section).
"""

import importlib.util
import re
import sys

NUMBER = r"(?P<num>[+-]?\d+(?:\.\d+)?)(?P<pct>%?)(?: ± (?P<half>\d+(?:\.\d+)?))?(?P<mark>[*°]?)"
CLAIM = re.compile(rf"(?:{NUMBER})?<!--(?P<body>[^>]*?)-->")


def _fmt_like(value: float, written: str) -> str:
    dec = len(written.split(".")[1]) if "." in written else 0
    return f"{value:{'+' if written[0] in '+-' else ''}.{dec}f}"


def check_claims(text: str, regimes: dict) -> tuple[int, list[str]]:
    """``(claims checked, problems)`` of every claim annotation in ``text`` (module docstring)."""
    problems, count = [], 0
    for match in CLAIM.finditer(text):
        body = match.group("body").strip()
        if "|" not in body:
            continue  # an ordinary comment
        count += 1
        fields = body.split("|")
        if len(fields) not in (3, 4) or fields[0] not in regimes:
            problems.append(f"malformed claim <!--{body}-->")
            continue
        reg, what, metric = regimes[fields[0]], fields[1], fields[2]
        verdict = fields[3] if len(fields) == 4 else None
        num = match.group("num")
        if what.endswith(("@problems", "@records")):
            pair, _, unit = what.partition("@")
            got, problem = _bootstrap(reg, pair, unit, metric, verdict)
            if problem:
                problems.append(f"<!--{body}-->: {problem}")
                continue
            if num is None:
                continue
            if match.group("mark") and match.group("mark") != got[2]:
                problems.append(f"{match.group(0)}: marker is {got[2] or 'none'}")
            got = got[:2]
        elif what == "probe":
            got = [reg.probe[metric]]
        elif what == "family":
            got = [reg.family_counts()[("comparisons", "survive", "uncorrected").index(metric)]]
        elif what.endswith("-nll"):
            metrics = reg.tested if metric == "all" else [metric]
            comps = [reg.comparisons.get((what[:-4], t)) for t in metrics]
            if None in comps:
                problems.append(f"<!--{body}-->: no such comparison")
                continue
            if verdict is not None and any(c.marker != verdict.replace("~", "") for c in comps):
                problems.append(f"<!--{body}-->: verdict is {[c.marker or '~' for c in comps]}")
            if num is not None:
                c = comps[0]
                got = [c.diff[0], c.diff[1]]
                if match.group("mark") and match.group("mark") != c.marker:
                    problems.append(f"{match.group(0)}: marker is {c.marker or 'none'}")
            elif verdict is None:
                problems.append(f"<!--{body}-->: neither a number nor a verdict")
        elif "@" in what:  # one seed's value
            method, seed = what.split("@")
            got = [reg.values.get(method, {}).get(metric, {}).get(int(seed)), None]
            if got[0] is None or num is None:
                problems.append(f"<!--{body}-->: no such value, or no number before it")
                continue
        else:
            cell = reg.cell(what, metric)
            if cell is None or num is None:
                problems.append(f"<!--{body}-->: no such cell, or no number before it")
                continue
            got = [cell[0], cell[1]]
        if num is None:
            continue
        if _fmt_like(got[0], num) != num:
            problems.append(f"{match.group(0)}: the data say {_fmt_like(got[0], num)}")
        half = match.group("half")
        if half is not None and (got[1] is None or _fmt_like(got[1], half) != half):
            problems.append(f"{match.group(0)}: the half-width is {got[1]}")
    return count, problems




def _bootstrap(sec, pair: str, unit: str, metric: str, verdict):
    """``([mean, None, marker], problem or None)`` of a bootstrap claim: per problem (percentage
    points; ``metric`` is the benchmark) or per held-out record (``metric`` a content metric)."""
    method, _, ref = pair.partition("-")
    key = {("problems", "nll"): "vs_nll", ("problems", "Base"): "vs_base", ("records", "nll"): "records_vs_nll"}
    table = (sec.extra or {}).get(key.get((unit, ref), ""))
    d = None if table is None else table["rows"].get(method, {}).get(metric)
    if d is None:
        return None, f"no such per-{unit[:-1]} difference"
    p = table["p_holm"][(method, metric)]
    marker = "*" if p < 0.05 else "°" if d.excludes_zero() else ""
    if verdict is not None and marker != verdict.replace("~", ""):
        return None, f"verdict is {marker or '~'}"
    return [(100 if unit == "problems" else 1) * d.mean, None, marker], None


def load_script(name: str, path):
    """A results folder's script (``summarize.py``: a script, not part of the package) as a module,
    loaded once per session under ``name``."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]
