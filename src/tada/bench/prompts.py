"""The benchmark's test prompts: ten genre groups of ten, and twenty held-out tuning prompts.

The reference protocol evaluates on 100 neutral prompts in ten genre groups (original mix;
world music; electronic subgenres; rock and metal; jazz and blues; classical and orchestral;
hip hop and R&B; country and Americana; pop and dance; unique and experimental) and tunes on
20 further prompts. These are tada's own prompts in those groups. Like the fitting prompts
(:data:`tada.concepts.BASE_PROMPTS`, none of which appears here) they never name a concept's
own words (piano, guitar, violin, vocals, fast or slow, happy or sad, jazz, rock, classical,
electronic), so the concept's neutral wrap is the only place a concept slot is named; a group
may still lean towards a pole (a string quartet towards violin), as the reference's do.

``test_prompts(n)`` takes the first prompt of every group, then the second of every group,
and so on, so any ``n`` spreads evenly over the groups.
"""

from __future__ import annotations

import re

from ..concepts import BASE_PROMPTS
from ..errors import TadaError

GROUPS: dict[str, tuple[str, ...]] = {
    "original mix": (
        "a sunny afternoon tune",
        "music for a long train ride",
        "a quiet theme for a bookshop",
        "a tune for a picnic",
        "a tune for a morning walk",
        "music for a museum visit",
        "a nostalgic theme for old photographs",
        "music for a rooftop evening",
        "a gentle theme for a garden",
        "a bright tune for a cooking show",
    ),
    "world music": (
        "flamenco music",
        "afrobeat groove",
        "celtic folk dance",
        "indian raga",
        "samba music",
        "klezmer tune",
        "highlife music",
        "tango music",
        "balkan brass music",
        "andean folk music",
    ),
    "electronic subgenres": (
        "techno music",
        "deep house music",
        "drum and bass",
        "synthwave music",
        "trance music",
        "dubstep music",
        "chiptune music",
        "downtempo chillout music",
        "uk garage music",
        "idm with glitchy beats",
    ),
    "rock and metal": (
        "heavy metal music",
        "punk music",
        "grunge music",
        "a stadium anthem with loud drums",
        "thrash metal music",
        "shoegaze music",
        "a garage band recording",
        "doom metal music",
        "surf music",
        "an arena power ballad",
    ),
    "jazz and blues": (
        "swing big band music",
        "bebop music",
        "delta blues music",
        "smooth lounge music",
        "chicago blues music",
        "dixieland music",
        "cool cocktail bar music",
        "ragtime music",
        "a smoky late night club tune",
        "boogie woogie music",
    ),
    "classical and orchestral": (
        "a symphony movement",
        "a string quartet",
        "baroque music",
        "an opera overture",
        "a chamber music piece",
        "a romantic era nocturne",
        "an epic orchestral score",
        "a choral hymn",
        "a minimalist orchestral piece",
        "a military band march",
    ),
    "hip hop and r&b": (
        "hip hop music",
        "boom bap beat",
        "trap music",
        "r&b bedroom jam",
        "neo soul music",
        "old school hip hop",
        "lo-fi hip hop beat",
        "a drill beat",
        "motown music",
        "a new jack swing groove",
    ),
    "country and americana": (
        "country western music",
        "bluegrass music",
        "americana music",
        "honky tonk music",
        "outlaw country music",
        "a cowboy campfire song",
        "appalachian folk music",
        "a country line dance tune",
        "southern gospel music",
        "a prairie ballad",
    ),
    "pop and dance": (
        "a pop hit",
        "disco music",
        "k-pop music",
        "eurodance music",
        "a synth pop tune",
        "dance pop music",
        "a summer radio hit",
        "bubblegum pop music",
        "a club banger",
        "teen pop music",
    ),
    "unique and experimental": (
        "experimental noise music",
        "a musical saw melody",
        "a sound collage",
        "music made of field recordings",
        "avant-garde music",
        "a theremin piece",
        "music for a haunted house",
        "a music box melody",
        "a tune played on bottles",
        "a drone piece",
    ),
}

TUNING_PROMPTS: tuple[str, ...] = (
    "music for a hotel lobby",
    "a tune for a sailing trip",
    "reggaeton music",
    "house party music",
    "an arena anthem with heavy drums",
    "a funky lounge groove",
    "a string orchestra piece",
    "west coast hip hop beat",
    "country pop music",
    "electro pop music",
    "a vaporwave tune",
    "a spaghetti western theme",
    "calypso music",
    "breakbeat music",
    "stoner metal music",
    "a piece for a silent film",
    "bossa lounge music",
    "a marching band tune",
    "a children's song",
    "a space exploration theme",
)

# a concept's own words: no test or tuning prompt may contain one
CONCEPT_WORDS = (
    "piano",
    "guitar",
    "violin",
    "vocal",
    "voice",
    "singing",
    "sung",
    "rap",
    "female",
    "male",
    "fast",
    "slow",
    "happy",
    "sad",
    "jazz",
    "rock",
    "classical",
    "electronic",
    "cheerful",
    "upbeat",
    "gloomy",
    "energetic",
)


def all_test_prompts() -> list[str]:
    """The 100 test prompts, interleaved over the groups (first of each group, then second, ...)."""
    columns = list(GROUPS.values())
    return [group[i] for i in range(max(map(len, columns))) for group in columns if i < len(group)]


def test_prompts(n: int) -> list[str]:
    """The first ``n`` interleaved test prompts (an even spread over the ten genre groups)."""
    prompts = all_test_prompts()
    if not 1 <= n <= len(prompts):
        raise TadaError(f"--prompts takes 1 to {len(prompts)} test prompts; got {n}")
    return prompts[:n]


def group_of(prompt: str) -> str:
    """The genre group a test prompt belongs to."""
    for name, group in GROUPS.items():
        if prompt in group:
            return name
    raise TadaError(f"{prompt!r} is not a benchmark test prompt")


def tuning_prompts(n: int) -> list[str]:
    """The first ``n`` held-out tuning prompts (used to calibrate alpha grids, never scored)."""
    if not 1 <= n <= len(TUNING_PROMPTS):
        raise TadaError(f"--tuning-prompts takes 1 to {len(TUNING_PROMPTS)} prompts; got {n}")
    return list(TUNING_PROMPTS[:n])


def concept_words_in(prompt: str) -> list[str]:
    """The concept words a prompt contains, as whole words (a check that test prompts stay neutral)."""
    return [w for w in CONCEPT_WORDS if re.search(rf"\b{w}s?\b", prompt.lower())]


def overlap_with_fitting() -> list[str]:
    """Test or tuning prompts that are also fitting prompts (must be none)."""
    fitting = set(BASE_PROMPTS)
    return [p for p in [*all_test_prompts(), *TUNING_PROMPTS] if p in fitting]
