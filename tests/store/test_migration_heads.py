"""Reading the head revision from the migration scripts' source, as Alembic would find it."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shadowproxy.store import migrate
from shadowproxy.store.migration_heads import Revision, head_revision, read_revision
from shadowproxy.store.scripts import shipped_head

_IDS = st.text(alphabet="0123456789abcdef_", min_size=1, max_size=12)


def script(revision: str, down: str | tuple[str, ...] | None, *, annotated: bool) -> str:
    """A revision file the way Alembic's template writes one (both assignment forms)."""
    if annotated:
        head = (f"revision: str = {revision!r}\n"
                f"down_revision: str | Sequence[str] | None = {down!r}\n")
    else:
        head = f"revision = {revision!r}\ndown_revision = {down!r}\n"
    return (f'"""Some change.\n\nRevision ID: {revision}\nRevises: {down}\n"""\n\n'
            "from collections.abc import Sequence\n\nimport sqlalchemy as sa\n"
            "from alembic import op\n\n" + head +
            "branch_labels = None\ndepends_on = None\n\n\n"
            "def upgrade() -> None:\n    revision = 'not this one'\n    op.execute('')\n")


@settings(max_examples=200)
@given(ids=st.lists(_IDS, min_size=1, max_size=12, unique=True), seed=st.integers(),
       annotated=st.lists(st.booleans(), min_size=12, max_size=12))
def test_a_chain_in_any_file_order_has_its_last_revision_as_head(
    ids: list[str], seed: int, annotated: list[bool]
) -> None:
    sources = [script(rev, ids[i - 1] if i else None, annotated=annotated[i])
               for i, rev in enumerate(ids)]
    random.Random(seed).shuffle(sources)
    assert head_revision(sources) == ids[-1]


@given(ids=st.lists(_IDS, min_size=3, max_size=10, unique=True))
def test_two_branches_have_no_single_head_until_a_merge_joins_them(ids: list[str]) -> None:
    *chain, left, right = ids
    sources = [script(rev, chain[i - 1] if i else None, annotated=True)
               for i, rev in enumerate(chain)]
    sources += [script(left, chain[-1], annotated=True),
                script(right, chain[-1], annotated=False)]
    assert head_revision(sources) is None
    merge = "m_" + "".join(ids)
    assert head_revision([*sources, script(merge, (left, right), annotated=True)]) == merge


@given(st.text(max_size=300))
def test_any_text_gives_a_revision_or_none_never_an_error(text: str) -> None:
    found = read_revision(text)
    assert found is None or isinstance(found, Revision)


def test_what_it_cannot_read_leaves_the_decision_to_alembic() -> None:
    good = script("0001", None, annotated=True)
    assert head_revision([good]) == "0001"
    assert head_revision([good, "revision = make_id()\ndown_revision = '0001'\n"]) is None
    assert head_revision([good, "down_revision = '0001'\n"]) is None  # no revision
    assert head_revision([good, "revision = '0002'\ndown_revision = 2\n"]) is None
    assert head_revision([good, "this is not python"]) is None
    assert head_revision([good, script("0001", None, annotated=False)]) is None  # twice
    assert head_revision([]) is None


def test_the_shipped_scripts_head_is_the_one_alembic_finds() -> None:
    assert shipped_head() == migrate.head()
