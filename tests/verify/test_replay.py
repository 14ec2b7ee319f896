"""The one decision path gives the plans that the single- and multi-target step functions gave before it.

``recorded_plans.json`` was written by the step functions of commit 3ce09b3 (see ``plan_recording.py``);
each of its 40 scenarios (38 with one target, 2 with two at different batches) is replayed through
:func:`hwprune.verify.decide` and the JSON text must be the same, byte for byte.
"""

from __future__ import annotations

import json

from tests.verify import plan_recording as rec


def test_recorded_plans_replay_byte_for_byte() -> None:
    recorded = rec.RECORDING.read_text()
    now = rec.dumps(rec.replay(rec.decide_now))
    if now != recorded:  # name the scenarios that changed, not a 160 KB diff
        old, new = json.loads(recorded), json.loads(now)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        raise AssertionError(f"{len(changed)} of {len(old)} recorded plans changed: {changed[:5]}")
    assert len(json.loads(recorded)) == len(rec.SCENARIOS) == 40


def test_the_recording_holds_real_cuts_on_one_and_two_targets() -> None:
    recorded = json.loads(rec.RECORDING.read_text())
    single = [v for k, v in recorded.items() if "+" not in k.split()[3]]
    joint = [v for k, v in recorded.items() if "+" in k.split()[3]]
    assert len(single) == 38 and len(joint) == 2
    assert all(v["removals"] for v in recorded.values())  # every scenario prunes something
    assert len({json.dumps(v["removals"], sort_keys=True) for v in single}) >= 20  # the settings matter
    assert all(len(v["per_target"]) == 2 for v in joint)
