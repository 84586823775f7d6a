"""Blind listening studies of steered clips: :mod:`.make` builds one from clips, :mod:`.server` serves its
pages and stores answers (:mod:`.store`), :mod:`.analyze` reports preference, quality and agreement."""
