"""``sotp rules check``: validate rule files as ``promtool check rules`` does, with its output and exit codes.

Per file it prints ``Checking FILE`` then ``  SUCCESS: N rules found`` or ``  FAILED:`` and the errors
(on stderr), then a blank line. ``--lint duplicate-rules`` (the default, as promtool's) also reports rules
with the same name and labels; lint findings alone exit 0 unless ``--lint-fatal`` (exit 3).
"""

from __future__ import annotations

import itertools
import sys
from typing import TextIO

from rules.gofmt import go_quote
from rules.rulefile import GroupSpec, RuleFileError, load_rule_file

FAILURE_EXIT = 1
LINT_EXIT = 3


def duplicate_rules(groups: list[GroupSpec]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """promtool's ``checkDuplicates``: (name, labels) pairs appearing more than once, each reported once."""
    rules = sorted((r.alert or r.record, tuple(sorted(r.labels.items()))) for g in groups for r in g.rules)
    dups: list[tuple[str, tuple[tuple[str, str], ...]]] = []
    for prev, cur in itertools.pairwise(rules):
        if prev == cur and (not dups or dups[-1] != cur):
            dups.append(cur)
    return dups


def check_files(files: list[str], lint: str = "duplicate-rules", lint_fatal: bool = False,
                out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    failed = False
    has_errors = False
    for f in files:
        print("Checking", f, file=out)
        errors: list[str] = []
        is_lint = False
        n = 0
        try:
            groups = load_rule_file(f)
        except RuleFileError as e:
            errors = [f"{f}: {x}" for x in e.errors]
        else:
            n = sum(len(g.rules) for g in groups)
            if lint in ("all", "duplicate-rules"):
                dups = duplicate_rules(groups)
                if dups:
                    msg = f"lint error {len(dups)} duplicate rule(s) found.\n"
                    for name, labels in dups:
                        msg += f"Metric: {name}\nLabel(s):\n"
                        for k, v in labels:
                            msg += f"\t{k}: {v}\n"
                    msg += "Might cause inconsistency while recording expressions"
                    errors = [msg]
                    is_lint = True
        if errors:
            out.flush()
            print("  FAILED:", file=err)
            for e2 in errors:
                print(e2, file=err)
            err.flush()
            failed = True
            has_errors = has_errors or not is_lint
        else:
            print(f"  SUCCESS: {n} rules found", file=out)
        print(file=out)
    if failed and has_errors:
        return FAILURE_EXIT
    if failed and lint_fatal:
        return LINT_EXIT
    return 0


__all__ = ["check_files", "duplicate_rules", "go_quote"]
