"""CSV spreadsheets (``iiifserver.presentation.spreadsheet``): columns, row grouping and errors.

Tested here: ``parse_header`` for every documented column (``@lang`` suffixes, ``metadata:<label>``
headers), ``read_sheet`` with one row per object and one row per page, object-level values given
once or repeated, conflicts (``line N`` and the column named), loose errors (unknown or missing
columns, empty files, rows without an object id, too many cells), delimiters, BOM, line endings,
the raw mappings produced for each column, and end to end: CSV text through ``parse_object`` to
the expected ``ObjectDescription``.
"""

from __future__ import annotations

from typing import Any

import pytest

from iiifserver.presentation.description import DescriptionError, parse_object
from iiifserver.presentation.model import Agent, LanguageMap, Link, MetadataEntry, ObjectDescription, Page
from iiifserver.presentation.spreadsheet import ATTRIBUTION_LABEL, Column, SheetObject, parse_header, read_sheet

SOURCE = "catalogue.csv"


def rows(*lines: str, end: str = "\n") -> str:
    return "".join(line + end for line in lines)


def raws(text: str) -> dict[str, dict[str, Any]]:
    """Object id -> raw description, for a sheet that must read without any error."""
    objects, loose = read_sheet(text, SOURCE)
    assert loose == []
    assert [o.error for o in objects] == [None] * len(objects)
    return {o.object_id: o.raw for o in objects if o.raw is not None}


def only_raw(text: str) -> dict[str, Any]:
    (raw,) = raws(text).values()
    return raw


def loose_error(text: str) -> DescriptionError:
    objects, loose = read_sheet(text, SOURCE)
    assert objects == []
    (error,) = loose
    return error


def none(*texts: str) -> LanguageMap:
    return (("none", texts),)


# -- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "column"),
    [
        ("object", Column("object", "object")),
        ("image", Column("image", "image")),
        ("page_label", Column("page_label", "page_label")),
        ("page_label@fr", Column("page_label@fr", "page_label", "fr")),
        ("page_label@en-GB", Column("page_label@en-GB", "page_label", "en-GB")),
        ("label", Column("label", "label")),
        ("label@nl", Column("label@nl", "label", "nl")),
        ("summary@fr", Column("summary@fr", "summary", "fr")),
        ("attribution@fr", Column("attribution@fr", "attribution", "fr")),
        ("provider@nl", Column("provider@nl", "provider", "nl")),
        ("provider_homepage", Column("provider_homepage", "provider_homepage")),
        ("provider_logo", Column("provider_logo", "provider_logo")),
        ("rights", Column("rights", "rights")),
        ("homepage", Column("homepage", "homepage")),
        ("see_also", Column("see_also", "seeAlso")),
        ("nav_date", Column("nav_date", "navDate")),
        ("behavior", Column("behavior", "behavior")),
        ("viewing_direction", Column("viewing_direction", "viewingDirection")),
        ("collection", Column("collection", "collection")),
        ("thumbnail", Column("thumbnail", "thumbnail")),
        ("metadata:Creator", Column("metadata:Creator", "metadata", "none", (("none", "Creator"),))),
        (
            "metadata:Date of origin",
            Column("metadata:Date of origin", "metadata", "none", (("none", "Date of origin"),)),
        ),
        ("metadata:Creator@fr", Column("metadata:Creator@fr", "metadata", "fr", (("none", "Creator"),))),
        (
            "metadata:en=Creator|fr=Auteur",
            Column("metadata:en=Creator|fr=Auteur", "metadata", "none", (("en", "Creator"), ("fr", "Auteur"))),
        ),
        (
            "metadata:en=Creator | fr=Auteur | nl=Maker@nl",
            Column(
                "metadata:en=Creator | fr=Auteur | nl=Maker@nl",
                "metadata",
                "nl",
                (("en", "Creator"), ("fr", "Auteur"), ("nl", "Maker")),
            ),
        ),
        ("metadata:none=Shelfmark", Column("metadata:none=Shelfmark", "metadata", "none", (("none", "Shelfmark"),))),
    ],
)
def test_parse_header(header: str, column: Column) -> None:
    assert parse_header(header, SOURCE) == column


@pytest.mark.parametrize(
    ("header", "phrase"),
    [
        ("colour", "unknown column (known: object, label, summary"),
        ("Object", "unknown column"),
        ("Label", "unknown column"),
        ("label@fr_FR", "unknown column"),
        ("label@", "unknown column"),
        ("label@none", "unknown column"),
        ("image@fr", "unknown column"),
        ("rights@en", "unknown column"),
        ("homepage@fr", "unknown column"),
        ("object@fr", "unknown column"),
        ("see-also", "unknown column"),
        ("seeAlso", "unknown column"),
        ("", "unknown column"),
        ("metadata:", "unknown column"),
        ("metadata:Creator@fr_FR", "unknown column"),
        ("metadata:en=Creator|Auteur", "a metadata label is 'Text' or 'en=Text|fr=Texte'"),
        ("metadata:en=", "a metadata label is 'Text' or 'en=Text|fr=Texte'"),
        ("metadata:=Creator", "a metadata label is"),
        ("metadata:fr_FR=Auteur", "a metadata label is"),
        ("metadata:en=Creator|fr=", "a metadata label is"),
        ("metadata:english=Creator", "a metadata label is"),
    ],
)
def test_parse_header_refuses(header: str, phrase: str) -> None:
    with pytest.raises(DescriptionError) as info:
        parse_header(header, SOURCE)
    assert (info.value.source, info.value.field) == (SOURCE, header)
    assert phrase in info.value.reason


@pytest.mark.parametrize(
    "header", ["colour", "label@fr_FR", "image@fr", "metadata:en=Creator|Auteur", "metadata:", "Object"]
)
def test_bad_column_is_a_loose_error_and_no_objects(header: str) -> None:
    error = loose_error(rows(f"object,{header},image", "book,x,p1", "other,y,p2"))
    assert (error.source, error.field) == (SOURCE, header)
    assert "unknown column" in error.reason or "a metadata label is" in error.reason


def test_header_cells_are_trimmed() -> None:
    assert raws(rows(" object , label ", "book,Hours")) == {"book": {"label": {"none": "Hours"}}}


# -- file-level errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "\ufeff"])
def test_empty_file(text: str) -> None:
    error = loose_error(text)
    assert (error.source, error.field, error.reason) == (SOURCE, "", "the spreadsheet is empty")


@pytest.mark.parametrize("text", [rows("label,image", "Hours,p1"), rows("label", "Hours"), rows("image;label", "a;b")])
def test_missing_object_column(text: str) -> None:
    error = loose_error(text)
    assert (error.source, error.field) == (SOURCE, "object")
    assert error.reason == "the spreadsheet needs an 'object' column"


def test_header_only() -> None:
    assert read_sheet(rows("object,label"), SOURCE) == ([], [])


# -- one row per object --------------------------------------------------------------------------


def test_one_row_per_object() -> None:
    objects, loose = read_sheet(rows("object,label,image", "book1,Book one,b1/p1", "book2,Book two,b2/p1"), SOURCE)
    assert loose == []
    assert objects == [
        SheetObject("book1", 2, {"label": {"none": "Book one"}, "pages": [{"image": "b1/p1"}]}, None),
        SheetObject("book2", 3, {"label": {"none": "Book two"}, "pages": [{"image": "b2/p1"}]}, None),
    ]


def test_object_column_alone_gives_empty_descriptions() -> None:
    assert raws(rows("object", "book", "other")) == {"book": {}, "other": {}}


def test_object_column_need_not_be_first() -> None:
    assert raws(rows("label,object", "Hours,book")) == {"book": {"label": {"none": "Hours"}}}


def test_cells_are_trimmed_and_empty_cells_ignored() -> None:
    assert raws(rows("object,label,summary,image", " book , Hours ,  , p1 ")) == {
        "book": {"label": {"none": "Hours"}, "pages": [{"image": "p1"}]}
    }


def test_fewer_cells_than_columns() -> None:
    assert raws(rows("object,label,summary,image", "book,Hours")) == {"book": {"label": {"none": "Hours"}}}


# -- one row per page ----------------------------------------------------------------------------


def test_one_row_per_page_object_fields_once() -> None:
    text = rows(
        "object,label,image,page_label",
        "book,Hours,p1,Folio 1r",
        "book,,p2,Folio 1v",
        "book,,p3,",
        "other,Psalter,q1,",
    )
    objects, loose = read_sheet(text, SOURCE)
    assert loose == []
    assert objects == [
        SheetObject(
            "book",
            2,
            {
                "label": {"none": "Hours"},
                "pages": [
                    {"image": "p1", "label": {"none": "Folio 1r"}},
                    {"image": "p2", "label": {"none": "Folio 1v"}},
                    {"image": "p3"},
                ],
            },
            None,
        ),
        SheetObject("other", 5, {"label": {"none": "Psalter"}, "pages": [{"image": "q1"}]}, None),
    ]


def test_one_row_per_page_object_fields_repeated_identically() -> None:
    text = rows(
        "object,label,rights,image",
        "book,Hours,http://rightsstatements.org/vocab/InC/1.0/,p1",
        "book,Hours,http://rightsstatements.org/vocab/InC/1.0/,p2",
    )
    assert only_raw(text) == {
        "label": {"none": "Hours"},
        "rights": "http://rightsstatements.org/vocab/InC/1.0/",
        "pages": [{"image": "p1"}, {"image": "p2"}],
    }


def test_object_level_value_may_come_on_a_later_row() -> None:
    assert only_raw(rows("object,label,image", "book,,p1", "book,Hours,p2")) == {
        "label": {"none": "Hours"},
        "pages": [{"image": "p1"}, {"image": "p2"}],
    }


def test_rows_of_one_object_need_not_be_adjacent() -> None:
    objects, _ = read_sheet(rows("object,image", "a,a1", "b,b1", "a,a2"), SOURCE)
    assert [(o.object_id, o.first_row, o.raw) for o in objects] == [
        ("a", 2, {"pages": [{"image": "a1"}, {"image": "a2"}]}),
        ("b", 3, {"pages": [{"image": "b1"}]}),
    ]


def test_page_labels_in_several_languages() -> None:
    assert only_raw(
        rows("object,image,page_label,page_label@fr", "book,p1,Folio 1r,Feuillet 1r", "book,p2,,f. 1v")
    ) == {
        "pages": [
            {"image": "p1", "label": {"none": "Folio 1r", "fr": "Feuillet 1r"}},
            {"image": "p2", "label": {"fr": "f. 1v"}},
        ]
    }


@pytest.mark.parametrize(
    ("header", "first", "second"),
    [
        ("label", "Hours", "Psalter"),
        ("label@fr", "Heures", "Psautier"),
        ("summary", "a", "b"),
        ("rights", "http://rightsstatements.org/vocab/InC/1.0/", "http://rightsstatements.org/vocab/CNE/1.0/"),
        ("nav_date", "1450", "1451"),
        ("thumbnail", "3", "03"),
        ("metadata:Creator", "Anon", "Master of Mary of Burgundy"),
        ("metadata:en=Creator|fr=Auteur@fr", "Anonyme", "Maître"),
        ("provider_homepage", "https://kbr.be/", "https://kbr.be/en/"),
        ("collection", "mss", "prints"),
    ],
)
def test_conflicting_object_values(header: str, first: str, second: str) -> None:
    text = rows(f"object,image,{header}", f"book,p1,{first}", "book,p2,", f"book,p3,{second}", f"other,q1,{second}")
    objects, loose = read_sheet(text, SOURCE)
    assert loose == []
    book, other = objects
    assert (book.object_id, book.first_row, book.raw) == ("book", 2, None)
    assert book.error is not None
    assert (book.error.source, book.error.field) == (f"{SOURCE} line 4", header)
    assert book.error.reason == f"{second!r} differs from {first!r} given for the same object on line 2"
    assert f"{SOURCE} line 4" in str(book.error)
    assert (other.object_id, other.error) == ("other", None)


def test_same_text_in_two_languages_is_no_conflict() -> None:
    assert only_raw(rows("object,label,label@fr", "book,Heures,Heures", "book,Heures,")) == {
        "label": {"none": "Heures", "fr": "Heures"}
    }


def test_page_label_without_image() -> None:
    objects, loose = read_sheet(rows("object,image,page_label@fr", "book,p1,a", "book,,b", "other,q1,"), SOURCE)
    assert loose == []
    book, other = objects
    assert book.raw is None
    assert book.error is not None
    assert (book.error.source, book.error.field) == (f"{SOURCE} line 3", "image")
    assert book.error.reason == "a page label needs an image in its row"
    assert other.raw == {"pages": [{"image": "q1"}]}


# -- loose rows ----------------------------------------------------------------------------------


def test_rows_without_object_id() -> None:
    objects, loose = read_sheet(rows("object,label", ",Hours", "book,B", "  ,x"), SOURCE)
    assert [(o.object_id, o.first_row, o.raw) for o in objects] == [("book", 3, {"label": {"none": "B"}})]
    assert [(e.source, e.field, e.reason) for e in loose] == [
        (f"{SOURCE} line 2", "object", "is required"),
        (f"{SOURCE} line 4", "object", "is required"),
    ]


def test_blank_rows_are_skipped() -> None:
    objects, loose = read_sheet(rows("object,label", "", "book,B", ",", "  ,  ", "", "other,O"), SOURCE)
    assert loose == []
    assert [(o.object_id, o.first_row) for o in objects] == [("book", 3), ("other", 7)]


def test_more_cells_than_columns() -> None:
    objects, loose = read_sheet(rows("object,label", "book,B,extra", "other,O"), SOURCE)
    assert [o.object_id for o in objects] == ["other"]
    assert [(e.source, e.field, e.reason) for e in loose] == [(f"{SOURCE} line 2", "", "more cells than columns")]


def test_line_numbers_count_lines_of_quoted_multiline_cells() -> None:
    objects, loose = read_sheet(rows("object,summary", 'book,"one', 'two"', ",x"), SOURCE)
    assert objects[0].raw == {"summary": {"none": "one\ntwo"}}
    assert [e.source for e in loose] == [f"{SOURCE} line 4"]


def test_first_row_is_where_a_multiline_row_starts() -> None:
    objects, _ = read_sheet(rows("object,summary", 'book,"one', 'two"'), SOURCE)
    assert objects[0].first_row == 2


# -- delimiters, BOM, line endings ---------------------------------------------------------------

EXPECTED_BOOK = {"label": {"none": "Hours"}, "pages": [{"image": "p1"}, {"image": "p2"}]}


@pytest.mark.parametrize(
    "text",
    [
        rows("object,label,image", "book,Hours,p1", "book,,p2"),
        rows("object;label;image", "book;Hours;p1", "book;;p2"),
        rows("object\tlabel\timage", "book\tHours\tp1", "book\t\tp2"),
        rows("object,label,image", "book,Hours,p1", "book,,p2", end="\r\n"),
        rows("object;label;image", "book;Hours;p1", "book;;p2", end="\r\n"),
        "\ufeff" + rows("object,label,image", "book,Hours,p1", "book,,p2"),
        "\ufeff" + rows("object;label;image", "book;Hours;p1", "book;;p2", end="\r\n"),
        rows("object,label,image", "book,Hours,p1", "book,,p2").rstrip("\n"),
        rows('"object","label","image"', '"book","Hours","p1"', '"book","","p2"'),
    ],
    ids=["comma", "semicolon", "tab", "comma-crlf", "semicolon-crlf", "bom", "bom-semicolon-crlf", "no-eol", "quoted"],
)
def test_delimiters_bom_and_line_endings(text: str) -> None:
    assert raws(text) == {"book": EXPECTED_BOOK}


@pytest.mark.parametrize(
    ("text", "label"),
    [
        (rows("object,label", 'book,"Hours, Use of Rome"', "b2,x"), "Hours, Use of Rome"),
        (rows("object;label", "book;Hours, Use of Rome", "b2;x"), "Hours, Use of Rome"),
        (rows("object;label", 'book;"Hours; Use of Rome"', "b2;x"), "Hours; Use of Rome"),
        (rows("object\tlabel", "book\tHours, Use of Rome; Bruges", "b2\tx"), "Hours, Use of Rome; Bruges"),
        (rows("object,label", 'book,"The ""Hours"" book"', "b2,x"), 'The "Hours" book'),
        (rows("object,label", "book,'t Hof", "b2,'s Gravenhage"), "'t Hof"),
        (rows("object,label", 'book,"Hours, Use of Rome"', "b2,x", end="\r\n"), "Hours, Use of Rome"),
    ],
)
def test_delimiters_inside_values(text: str, label: str) -> None:
    assert raws(text)["book"] == {"label": {"none": label}}


def test_semicolon_crlf_with_quoted_delimiter_in_last_cell() -> None:
    text = rows("object;label", 'book;"Hours; Use of Rome"', "b2;x", end="\r\n")
    assert raws(text)["book"] == {"label": {"none": "Hours; Use of Rome"}}


# -- column values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("label", "Hours", {"label": {"none": "Hours"}}),
        ("label@fr", "Heures", {"label": {"fr": "Heures"}}),
        ("summary", "Flemish", {"summary": {"none": "Flemish"}}),
        (
            "rights",
            "http://creativecommons.org/publicdomain/mark/1.0/",
            {"rights": "http://creativecommons.org/publicdomain/mark/1.0/"},
        ),
        ("homepage", "https://opac.kbr.be/1", {"homepage": "https://opac.kbr.be/1"}),
        ("see_also", "https://opac.kbr.be/1.json", {"seeAlso": "https://opac.kbr.be/1.json"}),
        ("nav_date", "1450-03", {"navDate": "1450-03"}),
        ("viewing_direction", "right-to-left", {"viewingDirection": "right-to-left"}),
        ("collection", "manuscripts/hours", {"collection": "manuscripts/hours"}),
        ("behavior", "paged", {"behavior": ["paged"]}),
        ("behavior", "paged individuals", {"behavior": ["paged", "individuals"]}),
        ("behavior", "paged;individuals", {"behavior": ["paged;individuals"]}),
        ("behavior", "paged  no-repeat", {"behavior": ["paged", "no-repeat"]}),
        ("thumbnail", "3", {"thumbnail": 3}),
        ("thumbnail", "03", {"thumbnail": 3}),
        ("thumbnail", "cover", {"thumbnail": "cover"}),
        ("thumbnail", "3a", {"thumbnail": "3a"}),
        ("thumbnail", "-1", {"thumbnail": "-1"}),
        ("attribution", "KBR", {"requiredStatement": {"label": ATTRIBUTION_LABEL, "value": {"none": "KBR"}}}),
        ("provider", "KBR", {"provider": [{"label": {"none": "KBR"}}]}),
        ("provider_homepage", "https://www.kbr.be/", {"provider": [{"homepage": "https://www.kbr.be/"}]}),
        ("provider_logo", "/iiif/3/logo.png", {"provider": [{"logo": "/iiif/3/logo.png"}]}),
        ("metadata:Creator", "Anon", {"metadata": [{"label": {"none": "Creator"}, "value": {"none": "Anon"}}]}),
    ],
)
def test_column_values(header: str, value: str, expected: dict[str, Any]) -> None:
    assert only_raw(rows(f"object\t{header}", f"book\t{value}")) == expected


@pytest.mark.parametrize("value", ["paged,individuals", "paged, individuals", " paged ,, individuals "])
def test_behavior_split_on_commas(value: str) -> None:
    assert raws(rows("object,behavior", f'book,"{value}"', "b2,paged"))["book"] == {
        "behavior": ["paged", "individuals"]
    }


def test_attribution_becomes_required_statement() -> None:
    raw = only_raw(rows("object,attribution,attribution@fr,attribution@nl", "book,KBR,KBR (fr),KBR (nl)"))
    assert raw == {
        "requiredStatement": {
            "label": {"en": ["Attribution"], "fr": ["Attribution"], "nl": ["Naamsvermelding"]},
            "value": {"none": "KBR", "fr": "KBR (fr)", "nl": "KBR (nl)"},
        }
    }
    assert parse_object({**raw, "pages": ["p1"]}, SOURCE).required_statement == MetadataEntry(
        (("en", ("Attribution",)), ("fr", ("Attribution",)), ("nl", ("Naamsvermelding",))),
        (("none", ("KBR",)), ("fr", ("KBR (fr)",)), ("nl", ("KBR (nl)",))),
    )


def test_provider_columns_make_one_provider() -> None:
    text = rows(
        "object,provider,provider@nl,provider_homepage,provider_logo",
        "book,KBR,KBR (nl),https://www.kbr.be/,/iiif/3/logos/kbr.png",
    )
    raw = only_raw(text)
    assert raw == {
        "provider": [
            {
                "label": {"none": "KBR", "nl": "KBR (nl)"},
                "homepage": "https://www.kbr.be/",
                "logo": "/iiif/3/logos/kbr.png",
            }
        ]
    }
    assert parse_object({**raw, "pages": ["p1"]}, SOURCE).provider == (
        Agent(
            "https://www.kbr.be/",
            (("none", ("KBR",)), ("nl", ("KBR (nl)",))),
            homepage=(Link("https://www.kbr.be/", "Text", format="text/html"),),
            logo=(Link("/iiif/3/logos/kbr.png", "Image", format="image/png"),),
        ),
    )


def test_provider_without_homepage_fails_in_parse_object() -> None:
    raw = only_raw(rows("object,provider,image", "book,KBR,p1"))
    with pytest.raises(DescriptionError) as info:
        parse_object(raw, SOURCE)
    assert (info.value.field, info.value.reason) == ("provider[0].id", "is required (or give a homepage)")


def test_metadata_columns_merge_by_label() -> None:
    text = rows(
        "object,metadata:Creator,metadata:Creator@fr,metadata:en=Date|fr=Date|nl=Datum,"
        "metadata:en=Date|fr=Date|nl=Datum@en,metadata:Shelfmark",
        "book,Anonymous,Anonyme,c. 1450,circa 1450,ms. 9026",
    )
    assert only_raw(text) == {
        "metadata": [
            {"label": {"none": "Creator"}, "value": {"none": "Anonymous", "fr": "Anonyme"}},
            {"label": {"en": "Date", "fr": "Date", "nl": "Datum"}, "value": {"none": "c. 1450", "en": "circa 1450"}},
            {"label": {"none": "Shelfmark"}, "value": {"none": "ms. 9026"}},
        ]
    }


def test_metadata_value_on_a_later_page_row() -> None:
    text = rows(
        "object,image,metadata:en=Creator|fr=Auteur@fr,metadata:en=Creator|fr=Auteur@en", "b,p1,Anonyme,", "b,p2,,Anon"
    )
    assert only_raw(text) == {
        "metadata": [{"label": {"en": "Creator", "fr": "Auteur"}, "value": {"fr": "Anonyme", "en": "Anon"}}],
        "pages": [{"image": "p1"}, {"image": "p2"}],
    }


def test_duplicate_column_headers_do_not_lose_values() -> None:
    objects, loose = read_sheet(rows("object,metadata:Subject,metadata:Subject", "book,Liturgy,Prayer"), SOURCE)
    reported = bool(loose) or any(o.error is not None for o in objects)
    kept = any("Liturgy" in repr(o.raw) for o in objects)
    assert reported or kept


def test_thumbnail_with_non_decimal_digit_does_not_crash_the_sheet() -> None:
    objects, _ = read_sheet(rows("object,thumbnail", "book,²", "other,1"), SOURCE)
    assert [o.object_id for o in objects] == ["book", "other"]


# -- end to end: CSV -> ObjectDescription ---------------------------------------------------------


def describe(text: str, folder_images: tuple[str, ...] = ()) -> dict[str, ObjectDescription]:
    return {
        object_id: parse_object(raw, f"{SOURCE} object {object_id}", folder_images)
        for object_id, raw in raws(text).items()
    }


def test_end_to_end_one_row_per_page() -> None:
    text = rows(
        "object;label@en;label@fr;summary;image;page_label;metadata:en=Creator|fr=Auteur;attribution;"
        "provider;provider_homepage;rights;homepage;see_also;nav_date;behavior;viewing_direction;collection;thumbnail",
        "ms9026;Book of hours;Livre d'heures;Flemish, c. 1450;ms9026/f1r;1r;Anonymous;KBR;KBR;https://www.kbr.be/;"
        "http://creativecommons.org/publicdomain/mark/1.0/;https://opac.kbr.be/9026;https://opac.kbr.be/9026.json;"
        "1450;paged;left-to-right;/manuscripts/;2",
        "ms9026;;;;ms9026/f1v;1v;;;;;;;;;;;;",
        "ms9026;Book of hours;Livre d'heures;;ms9026/f2r;;;;;;;;;;;;;",
    )
    source = f"{SOURCE} object ms9026"
    assert describe(text) == {
        "ms9026": ObjectDescription(
            source=source,
            label=(("en", ("Book of hours",)), ("fr", ("Livre d'heures",))),
            summary=none("Flemish, c. 1450"),
            metadata=(MetadataEntry((("en", ("Creator",)), ("fr", ("Auteur",))), none("Anonymous")),),
            rights="http://creativecommons.org/publicdomain/mark/1.0/",
            required_statement=MetadataEntry(
                (("en", ("Attribution",)), ("fr", ("Attribution",)), ("nl", ("Naamsvermelding",))), none("KBR")
            ),
            provider=(
                Agent(
                    "https://www.kbr.be/",
                    none("KBR"),
                    homepage=(Link("https://www.kbr.be/", "Text", format="text/html"),),
                ),
            ),
            homepage=(Link("https://opac.kbr.be/9026", "Text", format="text/html"),),
            see_also=(Link("https://opac.kbr.be/9026.json", "Dataset"),),
            pages=(Page("ms9026/f1r", label=none("1r")), Page("ms9026/f1v", label=none("1v")), Page("ms9026/f2r")),
            nav_date="1450-01-01T00:00:00Z",
            behavior=("paged",),
            viewing_direction="left-to-right",
            thumbnail=1,
            collection="manuscripts",
        )
    }


def test_end_to_end_one_row_per_object_with_folder_images() -> None:
    text = rows("object,label,thumbnail,behavior", "hours,Hours,hours/page-2,paged individuals", "psalter,Psalter,,")
    described = describe(text, ("hours/page-1", "hours/page-2"))
    folder_pages = (Page("hours/page-1", label=none("Page 1")), Page("hours/page-2", label=none("Page 2")))
    assert described == {
        "hours": ObjectDescription(
            source=f"{SOURCE} object hours",
            label=none("Hours"),
            pages=folder_pages,
            behavior=("paged", "individuals"),
            thumbnail=1,
        ),
        "psalter": ObjectDescription(source=f"{SOURCE} object psalter", label=none("Psalter"), pages=folder_pages),
    }


def test_end_to_end_thumbnail_image_that_is_not_a_page() -> None:
    (description,) = describe(rows("object,image,thumbnail", "book,p1,covers/book", "book,p2,")).values()
    assert (description.pages, description.thumbnail, description.thumbnail_image) == (
        (Page("p1"), Page("p2")),
        None,
        "covers/book",
    )


@pytest.mark.parametrize(
    ("header", "value", "field"),
    [
        ("rights", "CC-BY", "rights"),
        ("nav_date", "spring 1450", "navDate"),
        ("behavior", "paged facing-pages", "behavior"),
        ("viewing_direction", "rtl", "viewingDirection"),
        ("thumbnail", "9", "thumbnail"),
        ("homepage", "www.kbr.be", "homepage[0].id"),
        ("provider_logo", "//cdn/x.png", "provider[0].logo[0].id"),
        ("collection", "a//b", "collection"),
        ("image", "../p1", "pages[0].image"),
    ],
)
def test_end_to_end_bad_values_fail_in_parse_object(header: str, value: str, field: str) -> None:
    extra = "" if header == "image" else ",image"
    cells = "" if header == "image" else ",p1"
    raw = only_raw(
        rows(f"object,provider,provider_homepage,{header}{extra}", f"book,KBR,https://kbr.be/,{value}{cells}")
    )
    with pytest.raises(DescriptionError) as info:
        parse_object(raw, SOURCE)
    assert info.value.field == field


def test_every_raw_object_of_a_sheet_parses() -> None:
    text = rows(
        "object,label,label@nl,image,page_label@nl,metadata:Creator,nav_date,thumbnail",
        "a,Hours,Getijden,a/1,Blad 1,Anon,1450-03-15,2",
        "a,,,a/2,Blad 2,,,",
        "b,Psalter,,b/1,,Master,1500,",
        "c,Missal,,c/1,,,,c/1",
    )
    described = describe(text)
    assert list(described) == ["a", "b", "c"]
    assert described["a"].pages == (
        Page("a/1", label=(("nl", ("Blad 1",)),)),
        Page("a/2", label=(("nl", ("Blad 2",)),)),
    )
    assert described["a"].label == (("none", ("Hours",)), ("nl", ("Getijden",)))
    assert (described["a"].nav_date, described["a"].thumbnail) == ("1450-03-15T00:00:00Z", 1)
    assert described["b"].metadata == (MetadataEntry(none("Creator"), none("Master")),)
    assert described["b"].nav_date == "1500-01-01T00:00:00Z"
    assert (described["c"].thumbnail, described["c"].thumbnail_image) == (0, "")


def test_readme_example() -> None:
    text = rows(
        "object,image,page_label,label@fr,label@en,metadata:en=Creator|fr=Auteur,rights",
        "album,album/photo-1,Front,Album de voyage,Travel album,Anonyme,http://creativecommons.org/publicdomain/zero/1.0/",
        "album,album/photo-2,Back,,,,",
    )
    assert describe(text) == {
        "album": ObjectDescription(
            source=f"{SOURCE} object album",
            label=(("fr", ("Album de voyage",)), ("en", ("Travel album",))),
            metadata=(MetadataEntry((("en", ("Creator",)), ("fr", ("Auteur",))), none("Anonyme")),),
            rights="http://creativecommons.org/publicdomain/zero/1.0/",
            pages=(Page("album/photo-1", label=none("Front")), Page("album/photo-2", label=none("Back"))),
        )
    }
