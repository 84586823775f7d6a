"""The 21-feature word-swap map as a source of twin prompts for activation patching."""

from __future__ import annotations

import json

import pytest

from tada.errors import TadaError
from tada.swaps import (
    FEATURES,
    SwapFeature,
    caption_vocabulary,
    expressible_pairs,
    feature_pairs,
    feature_triples,
    procedural_captions,
    read_caption_pool,
    read_pair_csv,
    vocabulary_features,
    vocabulary_pairs,
    write_pair_csv,
)

PAPER_FEATURES = (
    "female male fast slow happy sad reggae metal jazz opera violin trumpet saxophone drums cello bongos "
    "flute maracas harmonica trombone xylophone"
).split()

# each feature's own word and what its twin says instead (the reference's map)
HEADLINE_SWAPS = {
    "female": "male",
    "male": "female",
    "fast": "slow",
    "slow": "fast",
    "happy": "sad",
    "sad": "happy",
    "reggae": "metal",
    "metal": "reggae",
    "jazz": "opera",
    "opera": "jazz",
    "violin": "trumpet",
    "trumpet": "violin",
    "saxophone": "drum",
    "drums": "saxophone",
    "cello": "bongo",
    "bongos": "cello",
    "flute": "maracas",
    "maracas": "flute",
    "harmonica": "harp",
    "trombone": "xylophone",
    "xylophone": "trombone",
}


def test_the_features_are_the_papers_21():
    assert list(FEATURES) == PAPER_FEATURES
    assert len(FEATURES["happy"].words) == 24  # "about 24 mood words"
    for name, feature in FEATURES.items():
        assert feature.name == name and feature.probe and feature.probe == feature.probe.lower()
        assert name in feature.trigger_words and feature.words[name] == HEADLINE_SWAPS[name]
    assert FEATURES["female"].words["woman"] == "man" and FEATURES["male"].words["his"] == "her"
    assert FEATURES["fast"].words["quick"] == FEATURES["fast"].words["energetic"] == "slow"
    assert FEATURES["happy"].words["cheerful"] == "gloomy" and FEATURES["happy"].words["upbeat"] == "downbeat"
    assert FEATURES["jazz"].words == {"jazz": "opera", "blues": "opera", "band": "choir"}
    assert FEATURES["violin"].words["fiddle"] == "trumpet" and FEATURES["violin"].probe == "a song with violin"


@pytest.mark.parametrize("name", PAPER_FEATURES)
def test_each_feature_swaps_its_word_in_every_occurrence_keeping_case(name):
    word, other = name, HEADLINE_SWAPS[name]
    caption = f"{word.capitalize()} tune  in a {word} mood, {word.upper()} again"
    assert feature_pairs([caption], name) == [
        (" ".join(caption.split()), f"{other.capitalize()} tune in a {other} mood, {other.upper()} again")
    ]
    # a caption that already names the counterfactual is no clean prompt
    assert feature_pairs([f"{word} then {other}"], name) == []
    assert feature_pairs([f"a tune in a {word}ish mood"], name) == []  # whole words only


def test_every_source_word_is_swapped_and_counterfactual_captions_are_left_out():
    captions = [
        "A woman sings; her voice is girlish, she sings of a female choir.",
        "a man and a woman sing",  # names the counterfactual 'man'
        "a lady sings with a male choir",  # male: 'lady' is one of the reference's exclusions
    ]
    assert feature_pairs(captions, "female") == [
        (captions[0], "A man sings; his voice is boyish, he sings of a male choir.")
    ]
    assert feature_pairs(captions, "male") == []
    assert feature_pairs(["Slow-paced, slow and slower"], "slow") == [
        ("Slow-paced, slow and slower", "Fast-paced, fast and faster")
    ]
    violin = ["a fiddle and a violin", "violin and trumpet", "violin with lush strings", "a violinist plays"]
    assert feature_pairs(violin, "violin") == [("a fiddle and a violin", "a trumpet and a trumpet")]
    # happy: selected by its five triggers only, but every one of its 24 words is swapped
    assert feature_pairs(["warm, loud pads", "happy, warm, loud pads"], "happy") == [
        ("happy, warm, loud pads", "sad, cold, quiet pads")
    ]
    # the longest source word wins where one contains another, and no swap feeds another
    feature = SwapFeature("t", {"slow-paced": "unhurried", "slow": "quick"}, "probe", ("slow",))
    assert feature.swap("slow, slow-paced") == "quick, unhurried"


def test_twins_are_deduplicated_in_order_and_limited():
    captions = ["violin one", "  violin   one ", "violin two", "no strings here", "violin three", "violin four"]
    assert feature_pairs(captions, "violin") == [
        ("violin one", "trumpet one"),
        ("violin two", "trumpet two"),
        ("violin three", "trumpet three"),
        ("violin four", "trumpet four"),
    ]
    assert feature_pairs(captions, "violin", limit=2) == [("violin one", "trumpet one"), ("violin two", "trumpet two")]
    assert len(feature_pairs([f"violin {i}" for i in range(300)], "violin")) == 256  # the reference's cap
    assert len(feature_pairs([f"violin {i}" for i in range(300)], "violin", limit=None)) == 300
    assert feature_triples(captions, "trumpet") == []
    assert feature_triples(["trumpet solo"], "trumpet") == [("trumpet solo", "violin solo", "a song with trumpet")]
    with pytest.raises(TadaError, match="unknown swap feature 'banjo'"):
        feature_pairs(captions, "banjo")
    with pytest.raises(TadaError, match="positive whole number"):
        feature_pairs(captions, "violin", limit=0)


def test_a_feature_refuses_a_swap_that_is_no_twin():
    with pytest.raises(ValueError):
        SwapFeature("x", {"strings": ""}, "p")  # a deletion changes the length
    with pytest.raises(ValueError):
        SwapFeature("x", {"harpist": "harpist"}, "p")
    with pytest.raises(ValueError):
        SwapFeature("x", {"violin": "trumpet"}, "p", ("viola",))
    with pytest.raises(ValueError):
        SwapFeature("x", {"violin": "trumpet"}, "p", excluded=("violin",))


def test_unequal_token_counts_are_dropped_on_tada_mini(mini):
    from tada.localize import check_twins, token_counts

    pairs = [
        ("a fast jazz tune with violin", "a slow jazz tune with violin"),
        ("a tune with deep cello", "a tune with deep bongo"),  # bongo is two word pieces on tada-mini
        ("a tune with airy flute", "a tune with airy maracas"),
        ("a woman singing", "a man singing"),
    ]
    assert token_counts(mini, pairs[1][0]) != token_counts(mini, pairs[1][1])
    kept = expressible_pairs(mini, pairs)
    assert kept == [pairs[0], pairs[3]]
    check_twins(mini, kept)  # what localisation accepts
    triples = [(*pair, "probe") for pair in pairs]
    assert expressible_pairs(mini, triples) == [triples[0], triples[3]]
    assert expressible_pairs(mini, iter(pairs), limit=1) == [pairs[0]]  # the first `limit` that fit


def test_tada_minis_vocabulary_expresses_eleven_features():
    captions = procedural_captions(2000)
    assert captions[:2] == procedural_captions(2)  # as `tada data captions --seed 600000` writes them
    vocabulary = caption_vocabulary(captions)
    assert {"fast-paced", "fast", "paced", "violin", "harp"} <= vocabulary and "opera" not in vocabulary
    assert [f.name for f in vocabulary_features(vocabulary)] == [
        *("female", "male", "fast", "slow", "happy", "sad", "violin", "trumpet", "saxophone", "drums", "harmonica")
    ]
    assert vocabulary_features({"violin", "trumpet"}) == [FEATURES["violin"], FEATURES["trumpet"]]
    assert vocabulary_features({"cello", "flute"}) == []
    happy = feature_pairs(["joyful jazz", "happy jazz"], "happy")
    assert vocabulary_pairs(happy, vocabulary) == [("happy jazz", "sad jazz")]  # no 'sorrowful' in tada-mini


def test_pair_csv_round_trip_and_one_line_errors(tmp_path):
    path = tmp_path / "twins.csv"
    triples = [("violin, solo", "trumpet, solo", "a song with violin"), ('a "fast" tune', 'a "slow" tune', "fast")]
    write_pair_csv(path, triples)
    assert read_pair_csv(path) == triples
    path.write_text("\ufeffProbe,feature,clean,corrupted\na song with violin,violin,violin solo,trumpet solo\n")
    assert read_pair_csv(path) == [("violin solo", "trumpet solo", "a song with violin")]

    # a CAA pair file's header and a default probe for rows without one
    path.write_text("positive,negative,probe\nviolin solo,trumpet solo,\nfast tune,slow tune,a fast track\n")
    assert read_pair_csv(path, default_probe="a song with violin") == [
        ("violin solo", "trumpet solo", "a song with violin"),
        ("fast tune", "slow tune", "a fast track"),
    ]
    path.write_text("clean,corrupted\nviolin solo,trumpet solo\n")
    assert read_pair_csv(path, default_probe="violin") == [("violin solo", "trumpet solo", "violin")]

    def error(text: str | bytes, pattern: str, **options) -> None:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        with pytest.raises(TadaError, match=pattern) as caught:
            read_pair_csv(path, **options)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)

    error("clean,corrupted\nviolin,trumpet\n", "line 1: the header row has no probe column")
    # the header row is required
    error("violin solo,trumpet solo,a song with violin\n", "no clean, corrupted and probe columns")
    error("clean,corrupted,probe\na,b,c\n\nviolin,trumpet, \n", "line 4: nothing in the probe column")
    error("clean,corrupted,probe\nviolin\n", "line 2: nothing in the corrupted and probe columns")
    error("clean,probe\nviolin,violin\n", "line 1: the header row has no corrupted column", default_probe="v")
    error(b"clean,corrupted,probe\n\xff\xfe,b,c\n", "cannot read")
    error("", "is empty")
    error("clean,corrupted,probe\n", "only a header row")
    with pytest.raises(TadaError, match="no twin-prompt file at"):
        read_pair_csv(tmp_path / "missing.csv")


def test_caption_pools_from_text_csv_and_corpus(tmp_path):
    text = tmp_path / "captions.txt"
    text.write_text("violin solo\n\n  a fast tune \n")
    assert read_caption_pool(text) == ["violin solo", "a fast tune"]
    table = tmp_path / "musiccaps.csv"
    table.write_text('ytid,caption,aspect_list\nx1,"A violin\nsolo.",a\nx2,,b\nx3,A fast tune.,c\n')
    assert read_caption_pool(table) == ["A violin solo.", "A fast tune."]
    assert feature_pairs(read_caption_pool(table), "violin") == [("A violin solo.", "A trumpet solo.")]
    table.write_text("ytid,text\nx1,violin\n")
    with pytest.raises(TadaError, match="no 'caption' column"):
        read_caption_pool(table)
    corpus = tmp_path / "corpus"
    (corpus / "audio").mkdir(parents=True)
    (corpus / "audio" / "clip-1.wav").write_bytes(b"")
    record = {"id": "clip-1", "path": "audio/clip-1.wav", "seed": 1, "caption": "Folk with fiddle."}
    (corpus / "labels.jsonl").write_text(json.dumps(record) + "\n")
    assert read_caption_pool(corpus) == ["Folk with fiddle."]
