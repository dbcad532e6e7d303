"""Lenses: getters, putters and their laws, composition, the registry and its errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.typing import NDArray

import atdata
from atdata.errors import LensNotFoundError, SchemaError
from atdata.lens import Lens, LensRegistry, find_lens
from atdata.sample import DictSample


@atdata.packable
class Photo:
    image: NDArray
    label: str
    score: float


@atdata.packable
class Labelled:
    label: str
    score: float


@atdata.packable
class LabelOnly:
    label: str


@atdata.packable
class Upper:
    text: str


@atdata.packable
class Unreachable:
    x: int


@atdata.lens
def photo_to_labelled(p: Photo) -> Labelled:
    return Labelled(label=p.label, score=p.score)


@photo_to_labelled.putter
def _put_labelled(view: Labelled, source: Photo) -> Photo:
    return dataclasses.replace(source, label=view.label, score=view.score)


@atdata.lens
def labelled_to_label(s: Labelled) -> LabelOnly:
    return LabelOnly(label=s.label)


@labelled_to_label.putter
def _put_label(view: LabelOnly, source: Labelled) -> Labelled:
    return dataclasses.replace(source, label=view.label)


@atdata.lens
def label_to_upper(s: LabelOnly) -> Upper:  # no putter
    return Upper(text=s.label.upper())


def photo(label: str = "cat", score: float = 0.5) -> Photo:
    return Photo(image=np.arange(4, dtype=np.uint8).reshape(2, 2), label=label, score=score)


def same_photo(a: Photo, b: Photo) -> bool:
    return a.label == b.label and a.score == b.score and np.array_equal(a.image, b.image)


# -- laws -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ln", [photo_to_labelled, photo_to_labelled >> labelled_to_label], ids=["single", "composed"]
)
def test_get_put_law(ln: Lens) -> None:
    """Putting back what you got changes nothing."""
    s = photo()
    assert same_photo(ln.put(ln.get(s), s), s)


def test_put_get_law() -> None:
    """You get back what you put."""
    s = photo()
    v = Labelled(label="dog", score=0.9)
    assert photo_to_labelled.get(photo_to_labelled.put(v, s)) == v
    composed = photo_to_labelled >> labelled_to_label
    assert composed.get(composed.put(LabelOnly(label="bird"), s)) == LabelOnly(label="bird")


def test_put_put_law() -> None:
    """A second put wins outright."""
    s = photo()
    v1, v2 = Labelled(label="a", score=0.1), Labelled(label="b", score=0.2)
    twice = photo_to_labelled.put(v2, photo_to_labelled.put(v1, s))
    assert same_photo(twice, photo_to_labelled.put(v2, s))


def test_put_leaves_unseen_fields_alone() -> None:
    s = photo()
    out = photo_to_labelled.put(Labelled(label="dog", score=1.0), s)
    assert out.label == "dog" and np.array_equal(out.image, s.image)


# -- lens objects -------------------------------------------------------------------------


def test_lens_is_callable_and_typed() -> None:
    assert photo_to_labelled(photo()) == Labelled(label="cat", score=0.5)
    assert photo_to_labelled.source is Photo and photo_to_labelled.view is Labelled
    assert repr(photo_to_labelled) == "Photo → Labelled (via photo_to_labelled)"


def test_composition_both_spellings() -> None:
    a = photo_to_labelled.then(labelled_to_label).then(label_to_upper)
    b = photo_to_labelled >> labelled_to_label >> label_to_upper
    for ln in (a, b):
        assert ln.source is Photo and ln.view is Upper
        assert ln(photo("cat")) == Upper(text="CAT")
    assert "photo_to_labelled >> labelled_to_label" in a.name


def test_composition_of_mismatched_lenses() -> None:
    with pytest.raises(SchemaError, match="cannot compose"):
        photo_to_labelled >> label_to_upper


def test_put_without_putter() -> None:
    with pytest.raises(SchemaError, match=r"no putter.*@label_to_upper.putter"):
        label_to_upper.put(Upper(text="X"), LabelOnly(label="x"))
    composed = labelled_to_label >> label_to_upper
    with pytest.raises(SchemaError, match="no putter"):
        composed.put(Upper(text="X"), Labelled(label="x", score=0))


def test_lens_needs_annotations() -> None:
    def bare(s):  # type: ignore[no-untyped-def]
        return s

    with pytest.raises(SchemaError, match="needs annotations"):
        atdata.lens(bare)


# -- registry -----------------------------------------------------------------------------


def test_registry_finds_direct_and_chained_lenses() -> None:
    assert find_lens(Photo, Labelled) is photo_to_labelled
    chain = find_lens(Photo, Upper)
    assert chain(photo("dog")) == Upper(text="DOG")
    assert chain.name == "photo_to_labelled >> labelled_to_label >> label_to_upper"


def test_registry_is_keyed_by_source_and_view() -> None:
    reg = LensRegistry()
    first = Lens(lambda s: LabelOnly(label=s.label), Labelled, LabelOnly, "first")
    second = Lens(lambda s: LabelOnly(label="x"), Labelled, LabelOnly, "second")
    reg.add(first)
    reg.add(second)
    assert reg.find(Labelled, LabelOnly) is second
    assert reg.from_type(Labelled) == [second]


def test_registry_prefers_the_shortest_chain() -> None:
    reg = LensRegistry()
    reg.add(Lens(lambda p: Labelled(label=p.label, score=0), Photo, Labelled, "a"))
    reg.add(Lens(lambda s: LabelOnly(label=s.label), Labelled, LabelOnly, "b"))
    reg.add(Lens(lambda p: LabelOnly(label="direct"), Photo, LabelOnly, "direct"))
    assert reg.find(Photo, LabelOnly).name == "direct"


def test_missing_lens_error_has_the_roadmap_form() -> None:
    with pytest.raises(LensNotFoundError) as info:
        find_lens(Photo, Unreachable)
    message = str(info.value)
    lines = message.splitlines()
    assert lines[0] == "No lens transforms Photo → Unreachable"
    assert "Available lenses from Photo:" in lines
    assert "  - Photo → Labelled (via photo_to_labelled)" in lines
    assert "Did you mean to define:" in lines
    assert "  def photo_to_unreachable(a: Photo) -> Unreachable:" in lines
    assert "      return Unreachable(...)" in lines
    assert info.value.source == "Photo" and info.value.view == "Unreachable"
    assert isinstance(info.value, SchemaError)


def test_missing_lens_from_a_type_without_lenses() -> None:
    with pytest.raises(LensNotFoundError, match="No lenses from Unreachable are registered"):
        find_lens(Unreachable, Photo)


def test_dict_sample_lens_is_automatic() -> None:
    d = DictSample.from_bytes(photo("owl").packed, key="k1")
    ln = find_lens(DictSample, Photo)
    typed = ln(d)
    assert isinstance(typed, Photo) and typed.label == "owl" and typed.__key__ == "k1"
    np.testing.assert_array_equal(typed.image, photo().image)


def test_dict_sample_lens_reports_missing_fields() -> None:
    d = DictSample({"label": "x"}, key="k")
    with pytest.raises(atdata.errors.SchemaMismatchError, match="image"):
        find_lens(DictSample, Photo)(d)


# -- through a dataset ----------------------------------------------------------------------


def test_dataset_as_type(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with atdata.ShardWriter(str(tmp_path / "s-%06d.tar"), manifest=False) as sink:
        for i in range(5):
            sink.write(photo(f"l{i}", i / 10))
    ds = atdata.Dataset[Photo](str(tmp_path / "s-000000.tar"))
    labels = ds.as_type(LabelOnly)
    assert labels.sample_type is LabelOnly
    got = list(labels.ordered())
    assert [s.label for s in got] == [f"l{i}" for i in range(5)]
    assert [s.__key__ for s in got] == [f"sample_{i:08d}" for i in range(5)]
    assert ds.as_type(Photo) is ds
    untyped = atdata.Dataset(str(tmp_path / "s-000000.tar"))
    assert [s.score for s in untyped.as_type(Photo).head(2)] == [0.0, 0.1]
    with pytest.raises(LensNotFoundError):
        ds.as_type(Unreachable)
