//! What netfront wrote in its directory, checked: features, queue count, and each queue's
//! rings and event channels (xen/include/public/io/netif.h, "Multi-queue support" and
//! "Split event channels").

use netif::RxFeatures;
use xenbus_backend::FrontendInfo;

/// The event channels of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channels {
    /// One port for both directions (`event-channel`).
    Shared(u32),
    /// `event-channel-tx` and `event-channel-rx`.
    Split {
        /// Kicked when the guest transmits.
        tx: u32,
        /// Kicked when the guest posts receive buffers.
        rx: u32,
    },
}

/// One queue's rings and ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueRefs {
    pub(crate) tx_ring_ref: u32,
    pub(crate) rx_ring_ref: u32,
    pub(crate) channels: Channels,
}

/// The frontend's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrontendConfig {
    pub(crate) features: RxFeatures,
    pub(crate) queues: Vec<QueueRefs>,
}

/// Reads and checks the frontend's nodes for a backend offering `max_queues` queues.
pub(crate) fn parse(fe: &FrontendInfo, max_queues: u32) -> Result<FrontendConfig, String> {
    // Only copying receive is offered (`feature-rx-flip` = 0); Linux's netback refuses the
    // same way.
    if fe.read_unsigned_or("request-rx-copy", 0) != 1 {
        return Err(format!(
            "{}/request-rx-copy must be 1: this backend only copies received frames",
            fe.path()
        ));
    }
    let nq = fe.read_unsigned_or("multi-queue-num-queues", 1);
    if nq == 0 || nq > u64::from(max_queues) {
        return Err(format!(
            "multi-queue-num-queues {nq} is not between 1 and {max_queues}"
        ));
    }
    let flag = |k: &str| fe.read_unsigned_or(k, 0) == 1;
    // Checksum offload to the guest covers IPv6 only with feature-ipv6-csum-offload; a
    // frontend without it gets every checksum completed here.
    let features = RxFeatures {
        sg: flag("feature-sg"),
        gso_tcpv4: flag("feature-gso-tcpv4"),
        gso_tcpv6: flag("feature-gso-tcpv6"),
        csum: !flag("feature-no-csum-offload") && flag("feature-ipv6-csum-offload"),
    };
    let queues = (0..nq)
        .map(|q| {
            let prefix = if nq == 1 {
                String::new()
            } else {
                format!("queue-{q}/")
            };
            queue_refs(fe, &prefix).map_err(|e| format!("queue {q}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(FrontendConfig { features, queues })
}

fn queue_refs(fe: &FrontendInfo, prefix: &str) -> Result<QueueRefs, String> {
    let key = |k: &str| format!("{prefix}{k}");
    let channels = if fe.get(&key("event-channel-tx")).is_some() {
        Channels::Split {
            tx: fe.read_u32(&key("event-channel-tx"))?,
            rx: fe.read_u32(&key("event-channel-rx"))?,
        }
    } else {
        Channels::Shared(fe.read_u32(&key("event-channel"))?)
    };
    Ok(QueueRefs {
        tx_ring_ref: fe.read_u32(&key("tx-ring-ref"))?,
        rx_ring_ref: fe.read_u32(&key("rx-ring-ref"))?,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use xenbus_backend::DeviceId;

    fn info(nodes: &[(&str, &str)]) -> FrontendInfo {
        FrontendInfo::from_nodes(DeviceId::new("vif", 5, 0), nodes.iter().copied())
    }

    const LINUX: [(&str, &str); 8] = [
        ("tx-ring-ref", "8"),
        ("rx-ring-ref", "9"),
        ("event-channel", "12"),
        ("request-rx-copy", "1"),
        ("feature-sg", "1"),
        ("feature-gso-tcpv4", "1"),
        ("feature-gso-tcpv6", "1"),
        ("feature-ipv6-csum-offload", "1"),
    ];

    #[test]
    fn one_queue_as_linux_writes_it() {
        let c = parse(&info(&LINUX), 4).unwrap();
        assert_eq!(
            c.features,
            RxFeatures {
                sg: true,
                gso_tcpv4: true,
                gso_tcpv6: true,
                csum: true
            }
        );
        assert_eq!(
            c.queues,
            [QueueRefs {
                tx_ring_ref: 8,
                rx_ring_ref: 9,
                channels: Channels::Shared(12)
            }]
        );
    }

    #[test]
    fn split_channels_under_queue_dirs() {
        let c = parse(
            &info(&[
                ("request-rx-copy", "1"),
                ("multi-queue-num-queues", "2"),
                ("queue-0/tx-ring-ref", "1"),
                ("queue-0/rx-ring-ref", "2"),
                ("queue-0/event-channel-tx", "3"),
                ("queue-0/event-channel-rx", "4"),
                ("queue-1/tx-ring-ref", "5"),
                ("queue-1/rx-ring-ref", "6"),
                ("queue-1/event-channel", "7"),
                ("feature-no-csum-offload", "1"),
                ("feature-ipv6-csum-offload", "1"),
            ]),
            2,
        )
        .unwrap();
        assert_eq!(c.features, RxFeatures::default());
        assert_eq!(c.queues[0].channels, Channels::Split { tx: 3, rx: 4 });
        assert_eq!(c.queues[1].channels, Channels::Shared(7));
        assert_eq!((c.queues[1].tx_ring_ref, c.queues[1].rx_ring_ref), (5, 6));
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut n = LINUX.to_vec();
        n[3] = ("request-rx-copy", "0");
        assert!(parse(&info(&n), 1).unwrap_err().contains("request-rx-copy"));
        n.truncate(3);
        assert!(parse(&info(&n), 1).unwrap_err().contains("request-rx-copy"));

        let mut n = LINUX.to_vec();
        n.push(("multi-queue-num-queues", "5"));
        let e = parse(&info(&n), 4).unwrap_err();
        assert!(e.contains("multi-queue-num-queues 5"), "{e}");

        let mut n = LINUX.to_vec();
        n[1] = ("rx-ring-ref", "x");
        let e = parse(&info(&n), 1).unwrap_err();
        assert!(e.contains("queue 0") && e.contains("rx-ring-ref"), "{e}");

        let mut n = LINUX.to_vec();
        n[2] = ("event-channel-tx", "3");
        let e = parse(&info(&n), 1).unwrap_err();
        assert!(
            e.contains("event-channel-rx") && e.contains("missing"),
            "{e}"
        );
    }
}
