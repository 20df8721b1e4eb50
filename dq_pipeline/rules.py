"""Learned label structure: rules the given tags (almost) always obey, learned from the tags alone.

From the given tags ``Y`` (N, K) 0/1, :func:`learn_label_rules` finds

* **exclusive groups** (exactly one of N): sets of >= 2 tags that pairwise (almost) never co-occur and
  of which (almost) every example carries exactly one (one hair colour, one continent). Two tags are
  *exclusive* when they share at most :data:`EXCLUSIVE_MAX_OVERLAP` of the rarer tag's examples; a group is
  grown greedily from the most frequent unassigned tag, each step adding the exclusive tag that most raises
  the share of examples carrying exactly one member, and kept when that share reaches
  :data:`GROUP_MIN_EXACTLY_ONE` (so up to 5% of examples may break it: the rule survives a few % noise);
* **cardinality bounds**: ``min_tags`` = 1 ("never empty") when at most :data:`MIN_TAGS_TOLERANCE` of
  the examples carry no tag, else 0; ``max_tags`` = the smallest m such that at most
  :data:`MAX_TAGS_TOLERANCE` of the examples carry more than m tags;
* **implications** A => B: at least :data:`IMPLICATION_MIN_SUPPORT` examples carry A (and at least 1%
  of N), B accompanies A in at least :data:`IMPLICATION_MIN_CONFIDENCE` of them, and B is not nearly
  universal (confidence exceeds B's prevalence by at least :data:`IMPLICATION_MIN_LIFT_GAP`); implications
  inside an exclusive group or implied by one (B carried by everybody in a group) are left out.

:func:`violations` lists, per example, the rules its tags break; :func:`violation_counts` counts them for
many tag sets at once (used to keep every suggested tag set within the rules). Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Two tags are exclusive when they co-occur in at most this share of the rarer tag's examples.
EXCLUSIVE_MAX_OVERLAP = 0.1
#: An exclusive group is kept when at least this share of examples carries exactly one member.
GROUP_MIN_EXACTLY_ONE = 0.95
#: "Never empty" is learned when at most this share of examples carries no tag (survives a few % of
#: annotators' forgotten tags).
MIN_TAGS_TOLERANCE = 0.05
#: ``max_tags`` = the smallest m with at most this share of examples carrying more than m tags.
MAX_TAGS_TOLERANCE = 0.005
#: Implication A => B: A carried by at least this many examples (and 1% of N) ...
IMPLICATION_MIN_SUPPORT = 10
#: ... B present in at least this share of them ...
IMPLICATION_MIN_CONFIDENCE = 0.97
#: ... and that share exceeds B's prevalence by at least this much (no "everything implies a common tag").
IMPLICATION_MIN_LIFT_GAP = 0.2

RULE_COLUMNS = ["rule_type", "rule", "tags", "support", "confidence", "n_violations"]


@dataclass(frozen=True)
class LabelRules:
    """Rules learned from a tag matrix over ``classes`` (tag names, K); tags are referred to by index.

    ``groups``: exclusive (exactly-one-of) groups, each a tuple of tag indices; ``min_tags`` / ``max_tags``:
    cardinality bounds; ``implications``: (a, b) pairs meaning tag a => tag b. ``stats``: per rule
    (same order as :meth:`table`) its support (examples it applies to) and confidence (share obeying it).
    """

    n_tags: int
    groups: tuple[tuple[int, ...], ...] = ()
    min_tags: int = 0
    max_tags: int | None = None
    implications: tuple[tuple[int, int], ...] = ()
    stats: tuple[tuple[int, float], ...] = field(default=())

    def to_dict(self, classes: list[str] | None = None) -> dict[str, Any]:
        """JSON-serialisable form (tag names added when ``classes`` is given); :meth:`from_dict` reverses it."""
        out: dict[str, Any] = {
            "n_tags": self.n_tags,
            "groups": [list(map(int, g)) for g in self.groups],
            "min_tags": int(self.min_tags),
            "max_tags": None if self.max_tags is None else int(self.max_tags),
            "implications": [[int(a), int(b)] for a, b in self.implications],
            "stats": [[int(s), float(c)] for s, c in self.stats],
            "thresholds": {"exclusive_max_overlap": EXCLUSIVE_MAX_OVERLAP,
                           "group_min_exactly_one": GROUP_MIN_EXACTLY_ONE,
                           "min_tags_tolerance": MIN_TAGS_TOLERANCE,
                           "max_tags_tolerance": MAX_TAGS_TOLERANCE,
                           "implication_min_support": IMPLICATION_MIN_SUPPORT,
                           "implication_min_confidence": IMPLICATION_MIN_CONFIDENCE},
        }
        if classes is not None:
            out["descriptions"] = [r["rule"] for r in self.table(classes).to_dict("records")]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "LabelRules":
        return cls(
            n_tags=int(data["n_tags"]),
            groups=tuple(tuple(int(t) for t in g) for g in data.get("groups", [])),
            min_tags=int(data.get("min_tags", 0)),
            max_tags=None if data.get("max_tags") is None else int(data["max_tags"]),
            implications=tuple((int(a), int(b)) for a, b in data.get("implications", [])),
            stats=tuple((int(s), float(c)) for s, c in data.get("stats", [])),
        )

    @property
    def n_rules(self) -> int:
        return len(self.groups) + (self.min_tags > 0) + (self.max_tags is not None) + len(self.implications)

    def group_of(self) -> np.ndarray:
        """(K,) int: index of the exclusive group each tag belongs to, -1 for none."""
        out = np.full(self.n_tags, -1, dtype=np.int64)
        for g, members in enumerate(self.groups):
            out[list(members)] = g
        return out

    def _descriptions(self, classes: list[str]) -> list[tuple[str, str, list[str]]]:
        """(rule_type, text, tags) per rule, in the order of :meth:`violation_matrix`'s columns."""
        out = []
        for g in self.groups:
            names = [classes[t] for t in g]
            out.append(("exclusive_group", "exactly one of " + ", ".join(names), names))
        if self.min_tags > 0:
            out.append(("min_tags", f"at least {self.min_tags} tag{'s' if self.min_tags > 1 else ''} (never empty)"
                        if self.min_tags == 1 else f"at least {self.min_tags} tags", []))
        if self.max_tags is not None:
            out.append(("max_tags", f"at most {self.max_tags} tag{'s' if self.max_tags != 1 else ''}", []))
        for a, b in self.implications:
            out.append(("implication", f"{classes[a]} => {classes[b]}", [classes[a], classes[b]]))
        return out

    def violation_matrix(self, Y: np.ndarray) -> np.ndarray:
        """(N, R) bool: example i breaks rule r (rules in the order of :meth:`table`)."""
        Y = np.asarray(Y, dtype=bool)
        cols = []
        for g in self.groups:
            cols.append(Y[:, list(g)].sum(axis=1) != 1)
        card = Y.sum(axis=1)
        if self.min_tags > 0:
            cols.append(card < self.min_tags)
        if self.max_tags is not None:
            cols.append(card > self.max_tags)
        for a, b in self.implications:
            cols.append(Y[:, a] & ~Y[:, b])
        return np.stack(cols, axis=1) if cols else np.zeros((len(Y), 0), dtype=bool)

    def table(self, classes: list[str], Y: np.ndarray | None = None) -> pd.DataFrame:
        """One row per rule: rule_type ('exclusive_group' | 'min_tags' | 'max_tags' | 'implication'), rule (text),
        tags (names), support (examples it applies to), confidence (share of them obeying it),
        n_violations (in ``Y`` when given, else in the tags it was learned from)."""
        desc = self._descriptions(classes)
        stats = list(self.stats) + [(0, float("nan"))] * (len(desc) - len(self.stats))
        if Y is not None:
            n_viol = self.violation_matrix(Y).sum(axis=0).tolist()
        else:
            n_viol = [int(round(s * (1 - c))) if np.isfinite(c) else 0 for s, c in stats]
        return pd.DataFrame({
            "rule_type": [d[0] for d in desc], "rule": [d[1] for d in desc], "tags": [d[2] for d in desc],
            "support": [int(s) for s, _ in stats], "confidence": [float(c) for _, c in stats],
            "n_violations": [int(v) for v in n_viol],
        }, columns=RULE_COLUMNS)


def cooccurrence(Y: np.ndarray) -> np.ndarray:
    """(K, K) float64 counts of examples carrying both tags (diagonal: each tag's count) of Y (N, K) 0/1; one BLAS
    thread (a tall, thin product: several threads only contend, issue 11: 8 s instead of 0.2 s at 200k x 40)."""
    from threadpoolctl import threadpool_limits

    Yf = np.asarray(Y).astype(np.float64)
    with threadpool_limits(1):
        return Yf.T @ Yf


def _exclusive_pairs(co: np.ndarray) -> np.ndarray:
    """(K, K) bool from the co-occurrence counts ``co`` (K, K) (:func:`cooccurrence`): tags a, b co-occur in at most
    EXCLUSIVE_MAX_OVERLAP of the rarer one's examples."""
    n = np.diag(co)
    rarer = np.minimum(n[:, None], n[None, :])
    ok = co <= EXCLUSIVE_MAX_OVERLAP * rarer
    np.fill_diagonal(ok, False)
    ok &= (n[:, None] > 0) & (n[None, :] > 0)
    return ok


def _learn_groups(Y: np.ndarray, co: np.ndarray | None = None) -> list[tuple[tuple[int, ...], float]]:
    """Greedy exclusive groups of Y (N, K) bool: from each unassigned tag (most frequent first), add the exclusive
    candidate that most raises the share of examples with exactly one member, while it rises; keep groups of 2+
    tags whose share reaches GROUP_MIN_EXACTLY_ONE. Returns ``[(sorted member indices, share)]``. ``co``: Y's
    :func:`cooccurrence` counts, if the caller has them.

    Counts are kept incrementally, so a step reads only the rows of the member it adds (O(rows x K)), not all N:
    ``with_one[c]`` / ``with_none[c]`` = examples of tag c that carry exactly one / no member yet."""
    N, K = Y.shape
    co = (cooccurrence(Y) if co is None else co).astype(np.int64)
    excl = _exclusive_pairs(co)
    n = np.diag(co).copy()
    assigned = np.zeros(K, dtype=bool)
    groups = []
    rows_of = [np.flatnonzero(column) for column in Y.T]
    for start in np.argsort(-n, kind="stable"):
        if assigned[start] or n[start] == 0:
            continue
        members = [int(start)]
        count = Y[:, start].astype(np.int64)
        n_one = int(n[start])
        with_one, with_none = co[start].copy(), n - co[start]
        while True:
            cand = np.flatnonzero(~assigned & excl[members].all(axis=0))
            cand = cand[~np.isin(cand, members)]
            if len(cand) == 0:
                break
            # examples with exactly one member after adding each candidate: those with one now, less the
            # candidate's among them, plus the candidate's among those with none (exact integer counts)
            after = (n_one - with_one[cand] + with_none[cand]) / N
            best = int(np.argmax(after))
            if after[best] <= n_one / N:
                break
            added = int(cand[best])
            members.append(added)
            rows = rows_of[added]
            was = count[rows]
            from_none, from_one = Y[rows[was == 0]].sum(axis=0), Y[rows[was == 1]].sum(axis=0)
            with_none -= from_none
            with_one += from_none - from_one
            n_one += int((was == 0).sum() - (was == 1).sum())
            count[rows] += 1
        share = n_one / N
        if len(members) >= 2 and share >= GROUP_MIN_EXACTLY_ONE:
            groups.append((tuple(sorted(members)), share))
            assigned[members] = True
    return groups


def learn_label_rules(Y: np.ndarray) -> LabelRules:
    """Learn exclusive groups, cardinality bounds and implications from given tags Y (N, K) 0/1.

    Thresholds: module constants (support/confidence, see the module doc). An empty Y learns nothing.
    """
    Y = np.asarray(Y).astype(bool)
    if Y.ndim != 2:
        raise ValueError(f"Y must be (N, K), got shape {Y.shape}")
    N, K = Y.shape
    if N == 0 or K == 0:
        return LabelRules(n_tags=K)
    stats: list[tuple[int, float]] = []
    co = cooccurrence(Y)
    groups = _learn_groups(Y, co)
    stats += [(N, share) for _, share in groups]
    card = Y.sum(axis=1)
    min_tags = 1 if (card == 0).mean() <= MIN_TAGS_TOLERANCE and card.max() > 0 else 0
    if min_tags:
        stats.append((N, float((card >= 1).mean())))
    max_tags = None
    if K > 1:
        m = int(np.quantile(card, 1 - MAX_TAGS_TOLERANCE, method="higher"))
        if m < K and not (groups and m <= len(groups)):  # a bound the groups already imply says nothing new
            max_tags = m
            stats.append((N, float((card <= m).mean())))
    group_of = np.full(K, -1)
    for g, (members, _) in enumerate(groups):
        group_of[list(members)] = g
    n = Y.sum(axis=0)
    prevalence = n / N
    implications = []
    min_support = max(IMPLICATION_MIN_SUPPORT, int(np.ceil(0.01 * N)))
    for a in np.flatnonzero(n >= min_support):
        conf = co[a] / n[a]
        for b in np.flatnonzero((conf >= IMPLICATION_MIN_CONFIDENCE) & (conf - prevalence >= IMPLICATION_MIN_LIFT_GAP)):
            if b == a or (group_of[a] >= 0 and group_of[a] == group_of[b]):
                continue
            implications.append((int(a), int(b)))
            stats.append((int(n[a]), float(conf[b])))
    return LabelRules(n_tags=K, groups=tuple(g for g, _ in groups), min_tags=min_tags, max_tags=max_tags,
                      implications=tuple(implications), stats=tuple(stats))


def violation_counts(rules: LabelRules, Y: np.ndarray) -> np.ndarray:
    """(N,) int: how many rules each tag set (row of Y, (N, K)) breaks."""
    return rules.violation_matrix(Y).sum(axis=1)


def violations(rules: LabelRules, Y: np.ndarray, classes: list[str]) -> list[list[str]]:
    """Per example, the text of every rule its given tags break (empty list = none)."""
    V = rules.violation_matrix(Y)
    texts = [d[1] for d in rules._descriptions(classes)]
    out: list[list[str]] = [[] for _ in range(len(V))]
    for i, r in zip(*np.nonzero(V)):  # row-major: each example's rules in rule order; few examples break any
        out[i].append(texts[r])
    return out


def repair(rules: LabelRules, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(K,) bool: tag set ``y`` (K,) changed as little as the rules allow, using tag probabilities ``p`` (K,).

    Per exclusive group: none carried -> add the most probable member; several -> keep the most probable.
    Implications a => b: add b (unless b's group already has a member; then drop a). Too few tags -> add the
    most probable absent tags outside filled groups; too many -> drop the least probable tags outside groups.
    """
    y = np.asarray(y, dtype=bool).copy()
    p = np.asarray(p, dtype=np.float64)
    group_of = rules.group_of()
    for g in rules.groups:
        members = np.array(g)
        on = members[y[members]]
        if len(on) == 0:
            y[members[np.argmax(p[members])]] = True
        elif len(on) > 1:
            keep = on[np.argmax(p[on])]
            y[on] = False
            y[keep] = True
    for a, b in rules.implications:
        if y[a] and not y[b]:
            gb = group_of[b]
            if gb >= 0 and y[list(rules.groups[gb])].any():
                y[a] = False
            else:
                y[b] = True
    free = group_of < 0
    while y.sum() < rules.min_tags and (free & ~y).any():
        cand = np.flatnonzero(free & ~y)
        y[cand[np.argmax(p[cand])]] = True
    while rules.max_tags is not None and y.sum() > rules.max_tags and (free & y).any():
        cand = np.flatnonzero(free & y)
        y[cand[np.argmin(p[cand])]] = False
    return y


def violation_matrix_or_none(rules: LabelRules | None, Y: np.ndarray) -> np.ndarray | None:
    """:meth:`LabelRules.violation_matrix` of Y, or None when there are no rules."""
    if rules is None or not rules.n_rules:
        return None
    return rules.violation_matrix(Y)
