"""Twin prompts for activation patching, made by word swaps: the paper's 21-feature map.

Activation patching (``tada localize``) generates a *clean* prompt that names a concept
("... with violin ...") and a *corrupted* twin with the concept's words swapped for a
counterfactual ("... with trumpet ..."), from the same noise, and asks how much of the
clean concept each layer restores; a *probe* text ("a song with violin") scores it. The
paper builds its twins from MusicCaps captions with one swap map per feature, 21 features
(each pole of female/male, fast/slow, happy/sad, reggae/metal, jazz/opera, violin/trumpet,
saxophone/drums, cello/bongos, flute/maracas, trombone/xylophone, and harmonica -> harp).

The protocol, per feature (the reference's ``src/preprocess``, kept word for word where it
is sound):

* a caption is used if it names one of the feature's *trigger* words (whole word, any case)
  and none of its counterfactual words: the swap's replacement words and the reference's
  extra exclusions (a "female" caption must not mention "man" already);
* its twin has every occurrence of every source word of the swap map replaced in one pass,
  the first letter's case kept ("Violin" -> "Trumpet");
* twins are deduplicated, kept in caption order, at most 256 per feature.

Where the reference breaks its own protocol this map differs: the violin swap deleted
"string(s)" (the twins would differ in length), so captions naming strings are excluded
instead; identity swaps (harpist -> harpist) are dropped; "rock" is no metal trigger (it is
never swapped, and is excluded for metal anyway). A model patches only twins whose text
inputs have equal token counts: :func:`expressible_pairs` keeps those.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import TadaError

#: the reference's cap on twins per feature
LIMIT = 256
#: first seed of the procedural captions read for tada-mini's vocabulary (its training clips have seeds 0-1999)
VOCABULARY_SEED = 600_000
PAIR_COLUMNS = ("clean", "corrupted", "probe")
PAIR_ALIASES = {"positive": "clean", "negative": "corrupted"}

_WORD = re.compile(r"\w+(?:[-']\w+)*")


@lru_cache(maxsize=256)
def _words_pattern(words: tuple[str, ...]) -> re.Pattern:
    """Any of ``words`` as a whole word, ignoring case; longer words first ("slow-paced" before "slow")."""
    alternatives = sorted({re.escape(w) for w in words}, key=lambda w: (-len(w), w))
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", flags=re.IGNORECASE)


def _in_case_of(word: str, replacement: str) -> str:
    """``replacement`` in the case of ``word``: VIOLIN -> TRUMPET, Violin -> Trumpet, violin -> trumpet."""
    if len(word) > 1 and word.isupper():
        return replacement.upper()
    return replacement[:1].upper() + replacement[1:] if word[:1].isupper() else replacement


@dataclass(frozen=True)
class SwapFeature:
    """One feature of the map: ``words`` swaps each source word (lowercase) for its replacement,
    ``probe`` scores the clean concept, ``triggers`` are the source words a clean caption must name
    (all of them if empty), ``excluded`` are words besides the replacements that rule a caption out."""

    name: str
    words: dict[str, str]
    probe: str
    triggers: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for source, target in self.words.items():
            if not (source and target) or source != source.lower() or target != target.lower() or source == target:
                raise ValueError(f"{self.name}: {source!r} -> {target!r} is no lowercase one-word swap")
        if not set(self.triggers) <= set(self.words):
            raise ValueError(f"{self.name}: triggers {set(self.triggers) - set(self.words)} are never swapped")
        if set(self.trigger_words) & set(self.forbidden):
            raise ValueError(f"{self.name}: {set(self.trigger_words) & set(self.forbidden)} both select and exclude")

    @property
    def trigger_words(self) -> tuple[str, ...]:
        return self.triggers or tuple(self.words)

    @property
    def forbidden(self) -> tuple[str, ...]:
        """Counterfactual words: a clean caption naming one already holds the corrupted concept."""
        return tuple(dict.fromkeys((*self.words.values(), *self.excluded)))

    def selects(self, caption: str) -> bool:
        """Whether ``caption`` names a trigger word and no counterfactual word."""
        named = _words_pattern(self.trigger_words).search(caption)
        return bool(named) and not _words_pattern(self.forbidden).search(caption)

    def swap(self, caption: str) -> str:
        """``caption`` with every source word replaced, in one pass (no swap feeds another)."""
        return _words_pattern(tuple(self.words)).sub(
            lambda m: _in_case_of(m.group(0), self.words[m.group(0).lower()]), caption
        )


def _feature(name: str, swaps: str, probe: str, triggers: str = "", excluded: str = "") -> SwapFeature:
    """A feature from ``"source>replacement ..."`` and space-separated word lists."""
    words = dict(item.split(">") for item in swaps.split())
    return SwapFeature(name, words, probe, tuple(triggers.split()), tuple(excluded.split()))


_GENRES = "reggae rock opera choir orchestra classical"

# The reference's MUSICCAPS_SWAPS_FEATURES (swaps), MUSICCAPS_ORIGINAL_FEATURES (triggers, where
# narrower than the swaps) and MUSICCAPS_COUNTERFACTUAL_FEATURES (excluded), in the paper's order.
FEATURES: dict[str, SwapFeature] = {
    f.name: f
    for f in (
        _feature(
            "female",
            "female>male woman>man her>his girlish>boyish she>he",
            "female vocal singing",
            "female woman girlish",
        ),
        _feature(
            "male",
            "male>female man>woman boy>girl his>her him>her himself>herself he>she",
            "male vocal singing",
            "male man",
            "female woman girl lady her she",
        ),
        _feature(
            "fast",
            "fast>slow rapid>slow dynamic>slow quick>slow quickly>slowly fastly>slowly energetic>slow tireless>slow "
            "sprightly>slowly groovy>slowly lively>slowly fast-paced>slow-paced vigorous>slow",
            "a fast track",
            excluded="slow slowed slower slowly",
        ),
        _feature(
            "slow",
            "slow>fast slowed>fasted slower>faster slowly>fastly slow-paced>fast-paced leisurely>hastily "
            "sedate>agitated romantic>action plodding>quick slow-moving>fast-moving",
            "a slow track",
            "slow slowed slower slowly slow-paced leisurely sedate plodding slow-moving",
            "fast rapidly quickly fastly energetic tireless sprightly groovy lively fast-paced vigorous",
        ),
        _feature(
            "happy",
            "passionate>apathetic joyful>sorrowful fun>dreary cheerful>gloomy warm>cold high-spirited>downcast "
            "lively>lifeless enthusiastic>disheartened energetic>weary engaging>detached vivacious>melancholic "
            "happy>sad enthusiastically>reluctantly danceable>plodding light>heavy positive>negative vibrant>dull "
            "upbeat>downbeat pulsating>flat loud>quiet punchy>muted buoyant>heavy-hearted youthful>world-weary "
            "uplifting>depressing",
            "a cheerful track",
            "happy joyful upbeat uplifting cheerful",
            "sad depressing dejected",
        ),
        _feature(
            "sad",
            "sad>happy depressing>cheerful dejected>joyful haunting>uplifting melancholic>cheerful "
            "emotional>lighthearted pensive>carefree regretful>content contemplative>playful wistful>hopeful "
            "meditative>breezy crying>laughing soulful>spirited lonely>connected poignant>joyous mellow>vibrant",
            "a sad track",
            "sad depressing dejected",
            "passionate joyful fun cheerful warm high-spirited lively enthusiastic energetic engaging vivacious "
            "happy enthusiastically danceable light positive upbeat uplifting pulsating loud punchy buoyant "
            "youthful vibrant",
        ),
        _feature(
            "reggae",
            "reggae>metal jamaican>metal tropical>metal chill>heavy summer>concert vacation>concert "
            "paradise>concert beach>concert",
            "a reggae song",
            "reggae jamaican tropical summer vacation beach",
            "metal heavy rock opera choir orchestra classical",
        ),
        _feature("metal", "metal>reggae heavy>chill", "a metal song", excluded=_GENRES),
        _feature("jazz", "jazz>opera blues>opera band>choir", "a jazz song", "jazz blues", _GENRES),
        _feature(
            "opera",
            "opera>jazz choir>blues orchestra>band classical>jazz",
            "an opera song",
            "opera choir orchestra",
            "reggae rock metal heavy jazz",
        ),
        # the reference deleted "string(s)" from the violin twin; here such captions are excluded instead
        _feature(
            "violin",
            "violin>trumpet fiddle>trumpet violins>trumpet violinist>trumpeter",
            "a song with violin",
            "violin fiddle",
            "trumpet string strings",
        ),
        _feature(
            "trumpet",
            "trumpet>violin trumpeter>violinist trumpets>violins",
            "a song with trumpet",
            "trumpet trumpets",
            "violin violins fiddle fiddles",
        ),
        _feature(
            "saxophone",
            "saxophone>drum sax>drum saxophones>drums saxophonist>drummer saxophonists>drummers",
            "a song with saxophone",
            "saxophone sax saxophones",
            "drum drums percussion",
        ),
        _feature(
            "drums",
            "drums>saxophone drum>saxophone percussion>saxophone percussionist>saxophonist "
            "percussionists>saxophonists drummer>saxophonist",
            "a song with drums",
            "drums drum percussion",
            "saxophone sax saxophones",
        ),
        _feature(
            "cello",
            "cello>bongo cellos>bongos cellist>bongomaster cellists>bongomasters celloist>bongomaster "
            "celloists>bongomasters",
            "a song with cello",
            "cello cellos",
            "bongo bongos",
        ),
        _feature(
            "bongos",
            "bongos>cello bongo>cello bongomaster>cellist bongomasters>cellists",
            "a song with bongos",
            "bongos bongo",
            "cello cellos",
        ),
        _feature(
            "flute",
            "flute>maracas flutes>maracas flutist>maracast flutists>maracasts fluteist>maracast fluteists>maracasts",
            "a song with flute",
            "flute flutes",
            "maracas maraca",
        ),
        _feature(
            "maracas",
            "maracas>flute maraca>flute maracast>flutist maracasts>flutists",
            "a song with maracas",
            "maracas maraca",
            "flute flutes",
        ),
        # the reference's identity swaps harpist>harpist, harpists>harpists are left out
        _feature(
            "harmonica",
            "harmonica>harp harmonicas>harps harmonicaist>harpist harmonicaists>harpists",
            "a song with harmonica",
            "harmonica harmonicas",
            "harp harps harpist harpists",
        ),
        _feature(
            "trombone",
            "trombone>xylophone trombones>xylophones trombonist>xylophonist trombonists>xylophonists "
            "tromboneist>xylophonist tromboneists>xylophonists",
            "a song with trombone",
            "trombone trombones",
            "xylophone xylophones xylophonist xylophonists",
        ),
        _feature(
            "xylophone",
            "xylophone>trombone xylophones>trombones xylophonist>trombonist xylophonists>trombonists "
            "xylophoneist>trombonist xylophoneists>trombonists",
            "a song with xylophone",
            "xylophone xylophones",
            "trombone trombones",
        ),
    )
}


def get_feature(feature: str | SwapFeature) -> SwapFeature:
    if isinstance(feature, SwapFeature):
        return feature
    try:
        return FEATURES[feature]
    except KeyError:
        raise TadaError(f"unknown swap feature {feature!r}; choose one of {', '.join(FEATURES)}") from None


# -- twins ---------------------------------------------------------------------------------
def feature_pairs(
    captions: Iterable[str], feature: str | SwapFeature, limit: int | None = LIMIT
) -> list[tuple[str, str]]:
    """(clean, corrupted) twins of ``feature`` from ``captions`` (whitespace collapsed): captions it
    selects, each with every source word swapped; no duplicates, caption order, at most ``limit``."""
    feature = get_feature(feature)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise TadaError(f"the twins' limit must be a positive whole number, got {limit!r}")
    pairs: dict[tuple[str, str], None] = {}
    for text in captions:
        clean = " ".join(str(text).split())
        if feature.selects(clean):
            pairs[(clean, feature.swap(clean))] = None
            if limit is not None and len(pairs) >= limit:
                break
    return list(pairs)


def feature_triples(captions: Iterable[str], feature: str | SwapFeature, limit: int | None = LIMIT) -> list:
    """:func:`feature_pairs` with the feature's probe: (clean, corrupted, probe) rows."""
    feature = get_feature(feature)
    return [(clean, corrupt, feature.probe) for clean, corrupt in feature_pairs(captions, feature, limit)]


def expressible_pairs(model: Any, pairs: Iterable[Sequence[str]], limit: int | None = None) -> list:
    """The twins (pairs or triples, clean and corrupted first) whose text inputs on ``model`` have the same
    token counts, the ones activation patching can run (``tada.localize.check_twins`` refuses the others);
    in order, the first ``limit`` of them. ``expressible_pairs(model, feature_pairs(pool, name, None), 256)``
    fills a feature's 256 from the whole pool."""
    from .localize import token_counts

    counts: dict[str, tuple[int, ...]] = {}

    def count(prompt: str) -> tuple[int, ...]:
        if prompt not in counts:
            counts[prompt] = token_counts(model, prompt)
        return counts[prompt]

    kept = []
    for pair in pairs:
        if limit is not None and len(kept) >= limit:
            break
        if count(pair[0]) == count(pair[1]):
            kept.append(pair)
    return kept


# -- what a model's captions can say ---------------------------------------------------------
def caption_vocabulary(captions: Iterable[str]) -> set[str]:
    """The lowercase words of ``captions``; a hyphenated word counts whole and by its parts."""
    words: set[str] = set()
    for text in captions:
        for word in _WORD.findall(text.lower()):
            words.add(word)
            words.update(re.split(r"[-']", word))
    return words


def procedural_captions(n: int = 2_000, seed: int = VOCABULARY_SEED) -> list[str]:
    """Captions of the procedural clips of seeds ``seed`` .. ``seed + n - 1`` (no audio), as
    ``tada data captions`` writes them: the wording tada-mini was trained on."""
    from .data.attributes import sample_spec
    from .data.captions import caption

    return [caption(sample_spec(seed + i)) for i in range(n)]


def vocabulary_features(vocabulary: set[str]) -> list[SwapFeature]:
    """The features a model trained on ``vocabulary`` can express: a trigger word and its replacement
    both occur in it. (A word can mean something else there: tada-mini knows "harp" only as "blues harp",
    a harmonica, so its harmonica -> harp twins do not take the harmonica away.)"""
    return [
        f
        for f in FEATURES.values()
        if any(word in vocabulary and f.words[word] in vocabulary for word in f.trigger_words)
    ]


def vocabulary_pairs(pairs: Sequence[Sequence[str]], vocabulary: set[str]) -> list:
    """The twins (pairs or triples) whose clean and corrupted prompts use only words of ``vocabulary``:
    on tada-mini, "happy" twins that swap "joyful" for "sorrowful" name a mood it never read."""
    return [pair for pair in pairs if caption_vocabulary(pair[:2]) <= vocabulary]


# -- files -----------------------------------------------------------------------------------
def read_caption_pool(path: str | Path) -> list[str]:
    """Captions to draw twins from: a text file (one per line), a CSV file with a ``caption`` column
    (MusicCaps' layout), or a corpus directory made by ``tada data make``."""
    from .concepts import csv_rows
    from .sae.cache import read_captions

    path = Path(path)
    if path.is_dir():
        return read_captions(corpus=path)
    if path.suffix.lower() != ".csv":
        return read_captions(captions=path)
    rows = csv_rows(path, "caption")
    header = [cell.strip().lower() for cell in rows[0][1]] if rows else []
    if "caption" not in header:
        raise TadaError(f"{path} has no 'caption' column in its header row")
    column = header.index("caption")
    captions = [" ".join(row[column].split()) for _, row in rows[1:] if len(row) > column and row[column].strip()]
    if not captions:
        raise TadaError(f"{path} holds no captions")
    return captions


def _columns(names: Sequence[str]) -> str:
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{listed} column" + ("s" if len(names) > 1 else "")


def read_pair_csv(path: str | Path, default_probe: str | None = None) -> list[tuple[str, str, str]]:
    """(clean, corrupted, probe) rows of a CSV file whose header row names those columns (in any order,
    other columns ignored; ``positive``/``negative`` stand for clean/corrupted, as in CAA pair files).
    With ``default_probe`` the probe column may be left out or empty. A missing column, an empty cell or
    an unreadable file is one error naming the file and line."""
    from .concepts import csv_rows

    path = Path(path)
    rows = csv_rows(path, "twin-prompt")
    if not rows:
        raise TadaError(f"{path} is empty; it needs a header row {','.join(PAIR_COLUMNS)} and one twin a row")
    header = [PAIR_ALIASES.get(cell.strip().lower(), cell.strip().lower()) for cell in rows[0][1]]
    needed = PAIR_COLUMNS if default_probe is None else PAIR_COLUMNS[:2]
    missing = [name for name in needed if name not in header]
    if missing:
        raise TadaError(
            f"{path}, line {rows[0][0]}: the header row has no {_columns(missing)} (it needs {', '.join(needed)})"
        )
    columns = [header.index(name) if name in header else len(header) for name in PAIR_COLUMNS]
    triples = []
    for line, row in rows[1:]:
        cells = [row[i].strip() if i < len(row) else "" for i in columns]
        cells[2] = cells[2] or (default_probe or "").strip()
        empty = [name for name, cell in zip(PAIR_COLUMNS, cells) if not cell]
        if empty:
            raise TadaError(f"{path}, line {line}: nothing in the {_columns(empty)}")
        triples.append((cells[0], cells[1], cells[2]))
    if not triples:
        raise TadaError(f"{path} holds no twins, only a header row")
    return triples


def write_pair_csv(path: str | Path, triples: Iterable[Sequence[str]]) -> Path:
    """Write (clean, corrupted, probe) rows under a header, the file :func:`read_pair_csv` reads."""
    from .files import write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PAIR_COLUMNS)
    writer.writerows(tuple(row) for row in triples)
    return write_text(path, buffer.getvalue())


# -- pair sets for a localisation study ------------------------------------------------------
def feature_sets(
    model: Any,
    features: str | Sequence[str],
    captions: str | Path,
    n_pairs: int | None = None,
    pool_words: bool = False,
) -> list:
    """One :class:`~tada.localisation_run.PairSet` per swap feature (``"all"``: the 21, keeping those
    with any twin ``model`` can patch): the pool's twins of equal token length, at most ``n_pairs``
    (default the reference's 256) of them. With ``pool_words`` only twins whose words all occur in the
    pool: for a model trained on the pool's captions alone (tada-mini), the words it can read."""
    from .localisation_run import PairSet

    pool = read_caption_pool(captions)
    names = list(FEATURES) if features in ("all", ["all"]) else _names(features)
    vocabulary = caption_vocabulary(pool) if pool_words else None
    sets = []
    for name in names:
        feature = get_feature(name)
        candidates = feature_pairs(pool, feature, None)
        if vocabulary is not None:
            candidates = vocabulary_pairs(candidates, vocabulary)
        twins = expressible_pairs(model, candidates, n_pairs or LIMIT)
        if twins:
            sets.append(PairSet(feature.name, twins, feature.probe, {"source": str(captions), "feature": name}))
        elif features not in ("all", ["all"]):
            raise TadaError(f"{captions} holds no caption that feature {name!r} can swap into twins of equal length")
    if not sets:
        raise TadaError(f"{captions} holds no caption any swap feature can turn into twins of equal length")
    return sets


def _names(features: str | Sequence[str]) -> list[str]:
    names = features.split(",") if isinstance(features, str) else list(features)
    return [n.strip() for n in names if n.strip()]


def pair_csv_has_header(path: str | Path) -> bool:
    """Whether a pair file starts with a header row naming its columns (clean/corrupted or
    positive/negative): the three-column twin format rather than headerless (positive, negative) rows."""
    from .concepts import csv_rows

    rows = csv_rows(path, "prompt-pair")
    names = {PAIR_ALIASES.get(c.strip().lower(), c.strip().lower()) for c in rows[0][1]} if rows else set()
    return {"clean", "corrupted"} <= names
