//! librdkafka's mock cluster in a process of its own, for `bench/compare.sh`: the quickstart
//! program's quixstreams 0.5.7 bundles a librdkafka that cannot negotiate API versions with tansu,
//! so it publishes here. Creates the topics named on the command line, prints the bootstrap
//! address, and runs until its standard input closes or it is killed.
//!
//!   cargo run --release -p hostpulse-tests --example mock_broker -- topic-a topic-b

use std::io::Read as _;

use rdkafka::mocking::MockCluster;

fn main() {
    let mock = MockCluster::new(1).expect("librdkafka mock cluster");
    for topic in std::env::args().skip(1) {
        mock.create_topic(&topic, 1, 1).expect("topic");
    }
    println!("{}", mock.bootstrap_servers());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}
