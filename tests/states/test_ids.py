"""Row ids: UUIDs version 7 (RFC 9562) on the service's clock."""

import uuid

from states.ids import new_id


def test_ids_are_version_7_with_the_rfc_variant_and_sort_by_millisecond(sim_clock):
    start = sim_clock.ms
    made = []
    for _ in range(3):
        made.append([new_id() for _ in range(50)])
        sim_clock.advance(0.001)
    for ms, batch in enumerate(made):
        for text in batch:
            parsed = uuid.UUID(text)
            assert str(parsed) == text  # the canonical lower-case 36-character form
            assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
            assert parsed.int >> 80 == start + ms  # the clock's milliseconds
    flat = [text for batch in made for text in batch]
    assert [sorted(flat).index(t) // 50 for t in flat] == [i // 50 for i in range(150)]  # a later ms sorts after
    assert len(set(flat)) == 150  # 74 random bits: none repeats
    assert len({(uuid.UUID(t).int >> 64) & 0xFFF for t in flat}) > 1  # rand_a, after the version, is random too
