//! The connection's own rules that need no socket: how long a head may take.
use super::*;

#[test]
fn a_head_earns_time_at_the_minimum_rate_up_to_the_header_timeout() {
    let deadlines = Deadlines {
        idle: Duration::from_secs(5),
        header: Duration::from_secs(10),
        header_min_rate: 100,
        send: Duration::from_secs(30),
    };
    let allowance = |received| head_allowance(&deadlines, received);
    assert_eq!(allowance(0), HEADER_SLACK);
    assert_eq!(allowance(50), HEADER_SLACK + Duration::from_millis(500));
    assert_eq!(allowance(500), HEADER_SLACK + Duration::from_secs(5));
    assert_eq!(allowance(5000), Duration::from_secs(10));
    let no_rate = Deadlines {
        header_min_rate: 0,
        ..deadlines
    };
    assert_eq!(head_allowance(&no_rate, 0), Duration::from_secs(10));
}
