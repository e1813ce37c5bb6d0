use super::*;

fn answer(offers: &[&str]) -> Option<String> {
    negotiate_deflate(offers.iter().copied()).map(|d| d.response())
}

#[test]
fn what_browsers_and_libraries_offer_is_accepted() {
    // Chromium, Firefox, Node's ws, Python's websockets.
    let capped =
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=9".to_owned());
    assert_eq!(
        answer(&["permessage-deflate; client_max_window_bits"]),
        capped
    );
    assert_eq!(
        answer(&["permessage-deflate; client_max_window_bits=15"]),
        capped
    );
    assert_eq!(
        answer(&["permessage-deflate; client_max_window_bits=8"]),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=8".into())
    );
    let reset = Some(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover".to_owned(),
    );
    assert_eq!(
        answer(&["permessage-deflate; client_no_context_takeover; server_no_context_takeover"]),
        reset
    );
    // Case and spacing do not matter; a quoted value is its token.
    assert_eq!(
        answer(&["Permessage-Deflate ;Client_Max_Window_Bits = \"10\""]),
        capped
    );
}

#[test]
fn a_bare_offer_is_told_to_reset_its_context() {
    // Firefox and OkHttp: no window parameter; accepted, the client told
    // to reset its context per message (nothing kept per connection).
    let reset = Some(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover".to_owned(),
    );
    assert_eq!(answer(&["permessage-deflate"]), reset);
    assert_eq!(
        answer(&["permessage-deflate; server_no_context_takeover"]),
        reset
    );
}

#[test]
fn the_server_window_must_stay_at_15_bits() {
    assert_eq!(
        answer(&["permessage-deflate; server_max_window_bits=15; client_no_context_takeover"]),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15"
                .into()
        )
    );
    assert_eq!(
        answer(&["permessage-deflate; server_max_window_bits=10; client_no_context_takeover"]),
        None
    );
}

#[test]
fn bad_offers_are_declined_and_the_next_one_is_tried() {
    let declined = [
        // Values out of range or malformed.
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=09",
        "permessage-deflate; client_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_no_context_takeover=1",
        // Unknown or repeated parameters.
        "permessage-deflate; client_no_context_takeover; x=1",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        // Not even a list element.
        "permessage-deflate; client_no_context_takeover; \"",
        "permessage deflate; client_no_context_takeover",
        "x-webkit-deflate-frame",
        "",
        ";;;",
    ];
    for offer in declined {
        assert_eq!(answer(&[offer]), None, "{offer:?}");
        // Never a reason to refuse what follows it.
        let next = format!("{offer}, permessage-deflate; client_no_context_takeover");
        assert!(
            answer(&[&next]).is_some() || offer.contains('"'),
            "{next:?}"
        );
    }
    // Several headers, the first acceptable offer of all of them wins.
    assert_eq!(
        answer(&[
            "foo, permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=12"
        ]),
        Some("permessage-deflate; server_no_context_takeover; client_max_window_bits=9".into())
    );
}

#[test]
fn a_comma_inside_quotes_does_not_split_the_list() {
    assert_eq!(
        answer(&["foo; a=\"b, permessage-deflate; client_no_context_takeover\""]),
        None
    );
}

#[test]
fn a_client_reads_the_answer() {
    let d = Deflate::from_response(
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=9",
    )
    .unwrap();
    assert_eq!(d.client_window_bits, Some(9));
    let d = Deflate::from_response("permessage-deflate; client_no_context_takeover").unwrap();
    assert_eq!(d.client_window_bits, None);
    assert_eq!(Deflate::from_response("foo"), None);
}
