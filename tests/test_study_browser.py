"""tada study in a real headless Chromium: a rater starts, hears every clip, answers A/B and MUSHRA pages,
each answer lands in SQLite; a server killed mid-study loses no submitted answer, and the page keeps an
answer the dead server could not take until it is back."""

from __future__ import annotations

import pytest
from studio_browser import BrowserPage, browser_available, chromium, free_port
from study_clips import StudyProcess, clip_folder

from tada.study.design import StudySettings
from tada.study.make import make_study
from tada.study.store import AnswerStore

pytestmark = pytest.mark.skipif(
    not browser_available(), reason="needs Debian's chromium and chromium-driver (make installs them)"
)


class RaterPage(BrowserPage):
    """A rater's gestures on the study's pages."""

    def start(self, url: str, name: str = "") -> None:
        """From the welcome page to the first trial."""
        self.d.get(url)
        if name:
            self.one("#tada-name").send_keys(name)
        self.one("#tada-start").click()
        self.wait(lambda: self.all(".progress"), 30)

    def page_number(self) -> int:
        return int(self.one(".progress").text.split()[1])

    def kind(self) -> str:
        return "mushra" if self.all("input[type=range]") else "pair"

    def play_all(self) -> None:
        """Start every clip (the page counts a clip heard once it has played)."""
        for audio in self.all("audio[data-index]"):
            self.d.execute_script("arguments[0].play()", audio)
            self.wait(lambda audio=audio: not self.d.execute_script("return arguments[0].paused", audio), 10)

    def answer(self, choice: str = "a", rating: int = 70) -> None:
        """Fill the page's form; Submit is still to be pressed."""
        if self.kind() == "mushra":
            for slider in self.all("input[type=range]"):
                self.d.execute_script(
                    "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))", slider, rating
                )
        else:
            self.one(f"#tada-choice-{choice}").click()

    def submit_and_wait_for(self, page: int) -> None:
        self.one("#tada-submit").click()
        self.wait(lambda: self.all("#tada-done") or (self.all(".progress") and self.page_number() == page))


@pytest.fixture
def study(tmp_path):
    clips = clip_folder(tmp_path / "clips", items=2, seconds=0.5)
    return make_study(clips, tmp_path / "study", StudySettings(checks=1, mushra_size=3))


def test_a_rater_answers_pair_and_mushra_pages_and_each_answer_is_in_sqlite(study):
    server = StudyProcess(study.folder, free_port()).start()
    try:
        with chromium() as driver:
            page = RaterPage(driver)
            page.start(server.url, "listener one")
            assert page.page_number() == 1 and page.kind() == "pair"
            assert page.one("#tada-submit").get_attribute("disabled") is not None
            for audio in page.all("audio"):  # the reference, A and B all decode, at the clips' length
                page.wait(lambda audio=audio: driver.execute_script("return arguments[0].readyState", audio) >= 1)
                assert driver.execute_script("return arguments[0].duration", audio) == pytest.approx(0.5, abs=0.01)
            page.answer("b")
            assert "Play every clip" in page.one("#tada-status").text  # nothing is taken unheard
            page.play_all()
            page.wait(lambda: page.one("#tada-submit").get_attribute("disabled") is None)
            page.submit_and_wait_for(2)
            stored = AnswerStore(study.answers_path).answers()
            assert len(stored) == 1 and stored[0]["trial"] == 0 and stored[0]["response"] == {"choice": 1}
            assert stored[0]["plays"] == [1, 1] and stored[0]["ms"] > 0
            plan = AnswerStore(study.answers_path).plan(stored[0]["rater"])
            while page.kind() == "pair":  # through the A/B block to the first MUSHRA page
                number = page.page_number()
                page.play_all()
                page.answer("a")
                page.submit_and_wait_for(number + 1)
            number = page.page_number()
            assert plan[number - 1].kind == "mushra" and len(page.all("input[type=range]")) == 5
            page.play_all()
            assert "Move every slider" in page.one("#tada-status").text
            page.answer(rating=83)
            page.submit_and_wait_for(number + 1)
            last = AnswerStore(study.answers_path).answers()[-1]
            assert last["kind"] == "mushra" and last["response"] == {"ratings": [83.0] * 5}
            assert len(AnswerStore(study.answers_path).answers()) == number
    finally:
        server.stop()


def test_killing_the_server_mid_study_loses_no_submitted_answer(study):
    server = StudyProcess(study.folder, free_port()).start()
    try:
        with chromium() as driver:
            page = RaterPage(driver)
            page.start(server.url)
            for number in (1, 2):
                page.play_all()
                page.answer("a")
                page.submit_and_wait_for(number + 1)
            rater_url = driver.current_url
            server.kill()  # mid-study, as a crash would
            assert len(AnswerStore(study.answers_path).answers()) == 2
            page.play_all()
            page.answer("b")
            page.one("#tada-submit").click()
            page.wait(lambda: "Not saved" in page.one("#tada-status").text)
            assert page.one("#tada-choice-b").is_selected()  # the answer is still in the page
            server.start()
            page.one("#tada-submit").click()
            page.wait(lambda: page.all(".progress") and page.page_number() == 4)
            answers = AnswerStore(study.answers_path).answers()
            assert [a["trial"] for a in answers] == [0, 1, 2] and answers[2]["response"] == {"choice": 1}
            driver.get(rater_url)  # coming back later: the next unanswered page
            page.wait(lambda: page.all(".progress") and page.page_number() == 4)
    finally:
        server.stop()
