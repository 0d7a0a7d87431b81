"""Safety checkers for a simulated Raft group, cheap enough to run after every step.

- election safety: at most one leader per term;
- log matching: two persisted logs holding an entry with the same index and term hold the same
  entries up to it (checked with a hash chain per log: equal (index, term) must mean an equal
  chain hash);
- leader completeness: an entry committed in term T is in the log of every leader of a term
  after T (checked when a node becomes leader);
- committed entries never change, and a node's commit index never decreases while it runs;
- state machine safety: no two nodes apply different entries at one index, and nodes that have
  applied up to the same index hold the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.manager.raft import Entry, RaftNode, StateType


@dataclass
class SafetyChecker:
    violations: list[str] = field(default_factory=list)
    leaders: dict[int, str] = field(default_factory=dict)
    #: index -> (entry term, term of the node that saw it committed first)
    committed: dict[int, tuple[int, int]] = field(default_factory=dict)
    chains: dict[tuple[int, int], int] = field(default_factory=dict)
    applied: dict[int, tuple[int, bytes]] = field(default_factory=dict)
    digests: dict[int, int] = field(default_factory=dict)

    def fail(self, what: str) -> None:
        if len(self.violations) < 20:
            self.violations.append(what)

    # ------------------------------------------------------------------ per-node observation

    def observe_node(self, node: RaftNode, last_commit: int) -> None:
        """Call after each step for a running node; `last_commit` is its previous commit."""
        if node.state is StateType.Leader:
            known = self.leaders.get(node.term)
            if known is None:
                self.leaders[node.term] = node.id
                self._check_leader_completeness(node)
            elif known != node.id:
                self.fail(f"election safety: {known} and {node.id} both lead term {node.term}")
        if node.commit < last_commit:
            self.fail(f"{node.id}: commit went back from {last_commit} to {node.commit}")
        for i in range(max(last_commit + 1, node.log.first_index()), node.commit + 1):
            term = node.log.term(i)
            if term is None:
                continue
            seen = self.committed.get(i)
            if seen is None:
                self.committed[i] = (term, node.term)
            elif seen[0] != term:
                self.fail(
                    f"committed entry changed: index {i} committed with term {seen[0]}, "
                    f"{node.id} now commits term {term}"
                )

    def _check_leader_completeness(self, node: RaftNode) -> None:
        first = node.log.first_index()
        for i, (term, seen_in) in self.committed.items():
            if seen_in < node.term and i >= first and node.log.term(i) != term:
                self.fail(
                    f"leader completeness: {node.id} leads term {node.term} without entry "
                    f"{term}/{i} committed in term {seen_in}"
                )

    # ------------------------------------------------------------------ persisted logs

    def chain_append(
        self, node_id: str, chain: list[int], base: int, ents: tuple[Entry, ...]
    ) -> None:
        """Extend `chain` (hashes of the persisted log from index `base`) with `ents`."""
        if not ents:
            return
        start = ents[0].index - base
        if start < 1:
            ents = ents[1 - start :]
            start = 1
            if not ents:
                return
        del chain[start:]
        h = chain[-1]
        for e in ents:
            h = hash((h, e.term, e.type.value, e.data))
            chain.append(h)
            known = self.chains.setdefault((e.index, e.term), h)
            if known != h:
                self.fail(f"log matching: {node_id} holds a different log up to {e.term}/{e.index}")

    def chain_base(self, index: int, term: int) -> int:
        return self.chains.setdefault((index, term), hash(("snapshot", index, term)))

    # ------------------------------------------------------------------ state machines

    def observe_apply(self, node_id: str, e: Entry, digest: int) -> None:
        seen = self.applied.setdefault(e.index, (e.term, e.data))
        if seen != (e.term, e.data):
            self.fail(
                f"state machine safety: {node_id} applied {e.term}/{e.index} {e.data!r}, "
                f"another node applied {seen[0]}/{e.index} {seen[1]!r}"
            )
        self.observe_state(node_id, e.index, digest)

    def observe_state(self, node_id: str, index: int, digest: int) -> None:
        if self.digests.setdefault(index, digest) != digest:
            self.fail(f"state machine safety: {node_id} has a different state at {index}")
