"""The report as one screen of text: the verdict first, then the numbers behind it, then
what to do about them. Returns strings; the script prints them."""
from __future__ import annotations

import dataclasses
import textwrap

from .report import Report
from ..engine.faults import ALL_TENSORS
from ..engine.loader import DERIVATIVES, template
from ..judge.diagnosis import cause_lines, title
from ..judge.diff import TensorDiff
from ..judge.probe_check import ProbeCheck
from ..judge.suspects import backward_suspects, forward_suspects, matching_probes
from ..step.trace import entry_meaning

WIDTH = max(len(name) for name in ALL_TENSORS)  # the widest default tensor name


def render(report: Report, early_shown: bool = False) -> str:
    """The whole report. What is known before the step (the lines the loader skipped, the
    probe table) comes first; `early_shown` leaves it out, for a script that printed it
    already (`early_block`) while the step ran."""
    early = [] if early_shown else [early_block(report.probes, report.skipped_lines, []).rstrip("\n")]
    sections = early + [verdict(report), cause_block(report.causes), notes_block(report), settings_block(report),
                        loss_block(report), gradient_table(report),
                        update_block(report), steps_block(report), coverage_block(report), parting_block(report),
                        fd_block(report), float32_note(report), next_block(report)]
    return "\n\n".join(section for section in sections if section) + "\n"


def early_block(probes: ProbeCheck | None, skipped: list, notes: list) -> str:
    """What is known before the model's step starts: the skipped lines and the probe table."""
    parts = [skipped_block(skipped), probe_table(probes).rstrip("\n")]
    return "\n\n".join(part for part in parts if part) + "\n" if any(parts) else ""


def skipped_block(skipped: list) -> str:
    """Every top-level statement of the engine's file the loader did not run, with why."""
    if not skipped:
        return ""
    lines = [f"  skipped  {len(skipped)} line{'s' * (len(skipped) > 1)} of the engine's file did not run (every "
             f"top-level statement runs, but one that reaches the network, starts a process, writes a file, runs "
             f"over a second or fails is skipped; put such code under `if __name__ == \"__main__\":`):"]
    for line in skipped:
        line = line if isinstance(line, dict) else dataclasses.asdict(line)
        lines.append(f"           line {line['line']}: {line['text']}  ({line['reason']})")
    return "\n".join(lines)


def cause_block(causes: list) -> str:
    return "\n".join(cause_lines(causes))


def verdict(report: Report) -> str:
    s = report.settings
    steps = "one training step" if s.steps == 1 else f"{s.steps} training steps in lockstep"
    missing = not_checked_text(report.probes)
    if report.agrees:
        caveat = "" if not report.focus.coverage.zero_tensors else " (but see the coverage WARNING below)"
        if missing:
            return (f"AGREE on everything it has: the scalar engine and torch agree on {steps}, within {s.dtype} "
                    f"tolerances{caveat}; not checked: {missing}.")
        return f"AGREE: the scalar engine and torch agree on {steps}, within {s.dtype} tolerances{caveat}."
    where = "" if s.steps == 1 else f" from step {report.focus_step + 1} on"
    also = f"; not checked: {missing}" if missing else ""
    return f"DISAGREE: the scalar engine and torch disagree{where}: {_reason(report)}{also}."


def not_checked_text(probes: ProbeCheck | None) -> str:
    """"2.0 / a (no __rtruediv__), ..." for the probes of operations the engine lacks."""
    if probes is None:
        return ""
    return ", ".join(dict.fromkeys(f"{r.expression.split(' at ')[0]} (no {', '.join(r.uses) or 'operation'})"
                                   for r in probes.missing))


# Why the model's step cannot see a wrong operator: what the model never does with it.
HIDDEN = {
    "relu": "microgpt squares relu, which hides a wrong gradient where relu is 0",
    "-": "the model never subtracts a Value from a plain number",
    "/": "the model never divides a plain number by a Value",
    "+=": "the model never uses +=", "-=": "the model never uses -=", "*=": "the model never uses *=",
    "/=": "the model never uses /=",
}


def _reason(report: Report) -> str:
    if report.probes is not None and not report.probes.agrees:
        faults = report.probes.faults
        counts = {}
        for r in faults:
            counts[r.operator] = counts.get(r.operator, 0) + 1
        operators = ", ".join(f"{op} {n}" if n > 1 else op for op, n in counts.items())
        probes = f"{len(faults)} operator probe{'s' * (len(faults) > 1)} fail{'s' * (len(faults) == 1)} ({operators})"
        if not report.step_agrees:
            return f"{probes}, and the model step disagrees as well"
        hidden = [HIDDEN.get(op, f"the model does not use {op}" if op in OPTIONAL_OPERATORS else "") for op in counts]
        hidden = [h for h in dict.fromkeys(hidden) if h]
        why = f": {'; '.join(hidden)}, which hides this" if hidden else " (it does not reach the case the probe tries)"
        why = why.replace(", which hides this", "") if hidden and "hides" in hidden[0] and len(hidden) == 1 else why
        return f"{probes}, but the model step agrees{why}"
    if report.focus.divergence is not None:
        return f"the forward pass parts at {report.focus.divergence.stage}, position {report.focus.divergence.position}"
    differing = report.differing_gradients
    if differing:
        return f"the forward agrees, the gradients of {len(differing)} of {len(report.focus.gradients)} tensors differ"
    if not report.finite_differences or report.finite_differences.agrees:
        return "the forward and the gradients agree, the Adam update differs"
    return "finite differences disagree with the scalar engine's gradients"


OPTIONAL_OPERATORS = ("tanh", "sigmoid", "sqrt", "sin", "cos", "abs", "2.0 ** a", "a ** b")


def probe_table(probes: ProbeCheck | None) -> str:
    """One line for the operators that are right; for each that is not, a line with every
    probe of it that fails, and one with every probe of it that could not run."""
    if probes is None:
        return ""
    by_operator = {}
    for result in probes.results:
        by_operator.setdefault(result.operator, []).append(result)
    ok = [op for op, results in by_operator.items()
          if any(r.status in ("ok", "note") for r in results) and not any(r.status == "fault" for r in results)]
    lines = ["  operators, each alone against torch float64 (value and every input's gradient)"]
    lines += _wrapped_names(ok or ["none"], "    ok           ")
    for op, results in by_operator.items():
        wrong = [r for r in results if r.status == "fault"]
        if wrong:
            others = f"; also {'; '.join(r.expression for r in wrong[1:])}" if wrong[1:] else ""
            lines.append(f"    WRONG        {op}: {wrong[0].message} ({len(wrong)} of {len(results)} "
                         f"{op} probe{'s' * (len(results) > 1)} fail{'s' * (len(wrong) == 1)}{others})")
    for op, results in by_operator.items():
        missing = [r for r in results if r.status == "missing"]
        if missing:
            names = sorted({name.strip() for r in missing for name in r.message.replace("needs ", "").split(",")})
            templates = "; ".join(template(name, "", "Value") for name in names if name in DERIVATIVES)
            lines.append(f"    NOT CHECKED  {op}: {', '.join(r.expression.split(' at ')[0] for r in missing)} (no "
                         f"{', '.join(names)}{'; ' + templates if templates else ''})")
    if probes.not_run:
        lines.append(f"    NOT RUN      {len(probes.not_run)} probes: {probes.not_run[0].message.split(': ', 1)[1]}")
    for note in probes.notes:
        lines.append(f"    note         {note.operator}: {note.message}")
    absent = [op for op, results in by_operator.items() if all(r.status == "absent" for r in results)
              and not any("not supported" in r.message for r in results)]
    unsupported = [r for r in probes.absent if "not supported" in r.message]
    optional = []
    if absent:
        optional.append(f"{', '.join(absent)}: not in this engine (the model does not need them)")
    optional += [f"{r.expression.split(' at ')[0]}: not supported (raised "
                 f"{r.message.split('raised ', 1)[-1].split(':')[0]})" for r in unsupported]
    if optional:
        lines += textwrap.wrap("; ".join(optional), 100, initial_indent="    optional     ", subsequent_indent=" " * 17)
    return "\n".join(lines) + "\n"


def _wrapped_names(names: list, first: str, width: int = 100) -> list:
    """Names two spaces apart, on lines of at most `width`, never breaking a name ("same node twice")."""
    lines, line = [], first
    for name in names:
        candidate = f"{line}{'  ' if line.strip() and line != first else ''}{name}"
        if len(candidate) > width and line.strip() and line != first:
            lines.append(line)
            line = " " * len(first) + name
        else:
            line = candidate
    return lines + [line]


def notes_block(report: Report) -> str:
    lines = [f"  note     {note}" for note in report.notes]
    depth = depth_line(report)
    return "\n".join(([depth] if depth else []) + lines)


def depth_line(report: Report) -> str:
    d = report.depth
    if d is None or d.graph is None:
        return ""
    graph = f"the model's graph is {d.graph:,} nodes deep ({d.n_layer} layer{'s' * (d.n_layer != 1)})"
    if d.survived is None:
        return f"  depth    {graph}"
    if d.failed is None:
        return f"  depth    {graph}; backward walked a chain of {d.survived:,} nodes without trouble"
    layers = d.n_layer + (d.survived - d.graph) // d.per_layer if d.per_layer else d.n_layer
    return (f"  depth    {graph}; backward fails with RecursionError on\n"
            f"           chains of {d.failed:,} nodes (it recurses once per node): models of up to about {max(layers, 0)} "
            f"layers are safe, deeper ones may reach the limit")


def settings_block(report: Report) -> str:
    s = report.settings
    weights = s.weights if s.weights not in ("reference", "dense") else f"{s.weights} (seed {s.seed})"
    start = f", resumed after step {s.start_step}" if s.start_step else ""
    total = s.num_docs or len(s.docs)
    if s.per_step == total:
        batch = f"{total} document{'s' * (total > 1)} in every step: {', '.join(s.docs)}"
    else:
        batch = f"{s.per_step} of {total:,} documents per step, in the reference program's order (seed {s.seed})"
    return "\n".join([
        f"  engine   {s.engine}   vs   torch {s.dtype} on {s.device}",
        *([f"  sandbox  {report.sandbox}"] if report.sandbox else []),
        f"  model    preset {s.preset}{_overrides(s)}, {s.num_params:,} parameters, weights {weights}{start}",
        f"  batch    {batch}",
    ])


def _overrides(s) -> str:
    changed = getattr(s, "overrides", None) or {}
    return "".join(f", {name} {value}" for name, value in changed.items())


def loss_block(report: Report) -> str:
    d, step = report.focus.loss, _step_loss(report)
    label = "loss" if report.settings.steps == 1 else f"loss of step {report.focus_step + 1}"
    return (f"  {label}   scalar {step.scalar:.15g}   torch {step.torch:.15g}   "
            f"|diff| {d.max_abs:.2g}   {_ok(d)}")


def gradient_table(report: Report) -> str:
    tol = report.tolerances.gradients
    lines = [f"  gradients of step {report.focus_step + 1} (agree within {tol.atol:g} + {tol.rtol:g} x magnitude)",
             f"    {'tensor':<{WIDTH}}  {'shape':>8}  {'checked':>7}  {'non-zero':>8}  "
             f"{'max |diff|':>10}  {'at':<9} {'max rel':>8}  at"]
    lines += [_row(d) for d in report.focus.gradients]
    return "\n".join(lines)


def _row(d: TensorDiff) -> str:
    shape = "x".join(str(n) for n in d.shape)
    return (f"    {d.name:<{WIDTH}}  {shape:>8}  {d.checked:>7,}  {d.nonzero:>8,}  "
            f"{d.max_abs:>10.2g}  {_at(d.max_abs_at):<9} {d.max_rel:>8.2g}  {_at(d.max_rel_at):<9} {_ok(d)}")


def update_block(report: Report) -> str:
    tol = report.tolerances.values
    lines = [f"  after the update (agree within {tol.atol:g} + {tol.rtol:g} x magnitude)"]
    for label, tables in (("parameters", report.focus.parameters), ("Adam m", report.focus.adam_m), ("Adam v", report.focus.adam_v)):
        lines.append(f"    {label:<12}{_summary(tables)}")
        if all(d.agrees for d in report.focus.gradients):  # else the wrong gradients explain these
            lines += [_row(d) for d in tables if not d.agrees]
    return "\n".join(lines)


def _summary(tables: list) -> str:
    agreeing = sum(d.agrees for d in tables)
    worst_abs = max(tables, key=lambda d: d.max_abs)
    worst_rel = max(tables, key=lambda d: d.max_rel)
    return (f"{agreeing} of {len(tables)} tensors agree; worst |diff| {worst_abs.max_abs:.2g} "
            f"({worst_abs.name} {_at(worst_abs.max_abs_at)}), worst rel {worst_rel.max_rel:.2g} "
            f"({worst_rel.name} {_at(worst_rel.max_rel_at)})")


def steps_block(report: Report) -> str:
    if report.settings.steps == 1:
        return ""
    lines = ["  loss at every step", f"    {'step':>5}  {'scalar':>18}  {'torch':>18}  {'|diff|':>8}"]
    lines += [f"    {step.step + 1:>5}  {step.scalar:>18.15g}  {step.torch:>18.15g}  "
              f"{abs(step.scalar - step.torch):>8.2g}  {'ok' if step.agrees else 'DIFFERS'}" for step in report.losses]
    last = report.losses[-1].step + 1
    lines.append(f"  parameters after step {last}: {_summary(report.final_parameters)}")
    return "\n".join(lines)


def coverage_block(report: Report) -> str:
    c = report.focus.coverage
    line = f"  coverage {c.nonzero:,} of {c.total:,} gradients are non-zero in at least one engine"
    if not c.zero_tensors:
        return line + ": every tensor was checked on numbers that are not 0."
    return "\n".join([
        line + ".",
        f"  WARNING  {len(c.zero_tensors)} tensor{'s' * (len(c.zero_tensors) > 1)} had no non-zero gradient at all: "
        f"{', '.join(c.zero_tensors)}.",
        "           Their check compared 0 with 0 and proves nothing about the engine. The reference",
        "           weights start attn_wo and mlp_fc2 at zero, which zeroes these gradients at the first",
        "           step in any engine; use --weights dense, or --steps 2 or more.",
    ])


def parting_block(report: Report) -> str:
    if report.step_agrees:
        return ""
    if report.focus.divergence is not None:
        return "  where they part\n" + _forward_parting(report)
    lines = ["  where they part", "    forward: agrees (every traced intermediate of every document in the batch)."]
    differing = report.differing_gradients
    if differing:
        lines.append(f"    backward: {len(differing)} of {len(report.focus.gradients)} gradient tensors differ, worst first: "
                     f"{', '.join(differing)}")
        lines.append(_nearest_hint(report, differing))
        lines.append(_suspects_line(report, *backward_suspects(_nearest_wrong(report, differing))))
    elif not all(d.agrees for d in report.focus.parameters + report.focus.adam_m + report.focus.adam_v):
        lines.append("    backward: every gradient agrees, so the Adam update differs (see the tensors above).")
    else:
        lines.append("    this step agrees; an earlier difference shows in the losses or the final parameters.")
    return "\n".join(lines)


def _forward_parting(report: Report) -> str:
    d, s = report.focus.divergence, report.settings
    doc = s.docs[((report.focus_step - s.start_step) * s.per_step + d.document) % len(s.docs)]
    tokens = [None, *doc, None]  # None stands for BOS at either end
    shown = [repr(ch) if ch is not None else "BOS" for ch in tokens]
    what = entry_meaning(d.stage, d.position, d.index, s.chars)
    return "\n".join([
        f"    forward: the first number that differs is {d.stage} at position {d.position} of {doc!r} "
        f"(input {shown[d.position]}, next {shown[d.position + 1]}), {what}:",
        f"             scalar {d.scalar!r}, torch {d.torch!r}",
        f"             every number computed before it agrees: look at the operations that make {d.stage}.",
        _suspects_line(report, *forward_suspects(d.stage)),
    ])


def _suspects_line(report: Report, where: str, operations: str, operators: set) -> str:
    found = matching_probes(report.probes, operators)
    probes = f"; failing probes among them: {'; '.join(r.message for r in found)}" if found else ""
    return f"    suspects {where}: {operations}{probes}"


def _nearest_wrong(report: Report, differing: list) -> str:
    backward_order = [d.name for d in reversed(report.focus.gradients)]
    backward_order.remove("lm_head")
    return next(name for name in ["lm_head", *backward_order] if name in differing)


def _nearest_hint(report: Report, differing: list) -> str:
    """Name the wrong gradient nearest the loss: the mistake sits between it and the loss."""
    backward_order = [d.name for d in reversed(report.focus.gradients)]  # lm_head sits at the loss end
    backward_order.remove("lm_head")
    backward_order.insert(0, "lm_head")
    nearest = next(name for name in backward_order if name in differing)
    agreeing = [name for name in backward_order if name not in differing]
    if nearest == "lm_head":
        return ("              lm_head, the weight nearest the loss, is already wrong: suspect the loss itself "
                "(log), the softmax (exp, division) or backward's bookkeeping.")
    return (f"              walking back from the loss, the first wrong gradient is {nearest} "
            f"(still right: {', '.join(agreeing)}): suspect an operation used between them.")


def fd_block(report: Report) -> str:
    fd = report.finite_differences
    if fd is None:
        return ""
    wrong = [entry for entry in fd.entries if not entry.agrees]
    lines = [f"  finite differences of the scalar engine's own loss (h = {fd.step_size:g}, agree within "
             f"{fd.tolerance.atol:g} + {fd.tolerance.rtol:g} x magnitude): "
             f"{len(fd.entries) - len(wrong)} of {len(fd.entries)} sampled gradients agree"]
    for entry in wrong or fd.entries[:3]:
        lines.append(f"    {entry.name:<{WIDTH}} {_at(entry.index):<9} autograd {entry.autograd: .10g}   "
                     f"estimate {entry.estimate: .10g}   {'ok' if entry.agrees else 'DIFFERS'}")
    return "\n".join(lines)


def float32_note(report: Report) -> str:
    if report.settings.dtype != "float32":
        return ""
    gradients = max(report.focus.gradients, key=lambda d: d.max_abs)
    parameters = max(report.focus.parameters, key=lambda d: d.max_abs)
    text = (f"torch ran in float32, the scalar engine in float64 (Python floats). float32 keeps about 7 "
            f"significant digits, so the two drift apart by rounding alone: here the loss by "
            f"{report.focus.loss.max_rel:.1e} relative, the gradients by up to {gradients.max_abs:.1e} "
            f"({gradients.name}) and the parameters after the update by up to {parameters.max_abs:.1e} "
            f"({parameters.name}). The check used float32's wider tolerances: drift of this size is "
            f"expected, not a bug. Check an engine in float64, the default.")
    return textwrap.fill(text, 100, initial_indent="  note     ", subsequent_indent=" " * 11)


def next_block(report: Report) -> str:
    s = report.settings
    if not report.agrees or s.fault is not None or s.engine != "microgpt_scalar.engine.Value":
        return ""
    return ("  next     --engine FILE checks your own Value class the same way; --inject NAME (see\n"
            "           --list-faults) shows a typical mistake being caught; --fd K adds finite differences.")


def _step_loss(report: Report):
    return next(step for step in report.losses if step.step == report.focus_step)


def _at(index: list) -> str:
    return "[" + ", ".join(str(i) for i in index) + "]"


def _ok(d: TensorDiff) -> str:
    return "ok" if d.agrees else "DIFFERS"


def fault_list(faults: dict) -> str:
    """--list-faults: every fault with what the learner wrote and where the check points."""
    lines = []
    for fault in faults.values():
        lines += [f"{fault.name}: {fault.summary}", f"    project:  {fault.correct}"]
        lines += [f"    learner:  {line}" for line in fault.faulty.split("\n")]
        lines += [f"    {line}" for line in textwrap.wrap(fault.why, 92)]
        lines += [f"    caught:   {_where_caught(fault)}", f"    cause:    the report names {title(fault.cause)} first", ""]
    return "\n".join(lines)


def _where_caught(fault) -> str:
    probes = f"; the probes of {', '.join(fault.probes)} fail" if fault.probes else ""
    if fault.forward_stage is not None:
        where = f"the forward pass parts at {fault.forward_stage}, position {fault.forward_position}"
    elif set(fault.gradients_differ) == set(ALL_TENSORS):
        where = "the forward agrees; every tensor's gradient differs"
    elif fault.gradients_differ:
        where = (f"the forward agrees; the gradients of {', '.join(fault.gradients_differ)} differ, "
                 f"those of {', '.join(fault.gradients_agree)} agree")
    elif fault.flags:
        return f"only on a model deep enough: {' '.join(fault.flags)} (the default model agrees)"
    else:
        return f"the model step agrees; only the probes see it{probes}"
    return where + (f" (from step {fault.min_steps} on)" if fault.min_steps > 1 else "") + probes
