//! The 16550 UART at COM1, built on vm-superio's register model. Output goes to whatever writer
//! the VMM chose (terminal, pty or log file); interrupts go to an eventfd the VMM wires to the
//! in-kernel interrupt controller as an irqfd.

use std::io::{self, Write};

use vm_superio::serial::NoEvents;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use crate::{warn_ratelimited, PioDevice};

/// COM1's base port and the legacy IRQ it uses.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's ISA IRQ.
pub const COM1_IRQ: u32 = 4;

/// Raises an interrupt by writing an eventfd (an irqfd on the KVM side).
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = io::Error;
    fn trigger(&self) -> io::Result<()> {
        self.0.write(1)
    }
}

/// The COM1 device.
pub struct SerialPort {
    uart: Serial<IrqTrigger, NoEvents, Box<dyn Write + Send>>,
}

impl std::fmt::Debug for SerialPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialPort").finish_non_exhaustive()
    }
}

impl SerialPort {
    /// A UART raising `irq` and writing what the guest sends to `out`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        SerialPort {
            uart: Serial::new(IrqTrigger(irq), out),
        }
    }

    /// Queues bytes typed by the user; returns how many fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.uart.fifo_capacity().min(bytes.len());
        match self.uart.enqueue_raw_bytes(&bytes[..room]) {
            Ok(n) => n,
            Err(e) => {
                warn_ratelimited!(5, error = ?e, "serial input dropped");
                0
            }
        }
    }
}

impl PioDevice for SerialPort {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        data.fill(0);
        if let (Some(first), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let (Some(&value), Ok(off)) = (data.first(), u8::try_from(offset)) else {
            return;
        };
        if let Err(e) = self.uart.write(off, value) {
            warn_ratelimited!(5, error = ?e, "serial output failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const THR: u16 = 0;
    const IER: u16 = 1;
    const LSR: u16 = 5;
    const LSR_DATA_READY: u8 = 1;

    #[test]
    fn transmit_reaches_the_writer() {
        let sink = Sink::default();
        let mut s = SerialPort::new(EventFd::new(0).unwrap(), Box::new(sink.clone()));
        for b in b"hi\n" {
            s.write(THR, &[*b]);
        }
        assert_eq!(&*sink.0.lock().unwrap(), b"hi\n");
    }

    #[test]
    fn input_is_readable_and_raises_the_irq_when_enabled() {
        let irq = EventFd::new(libc_nonblock()).unwrap();
        let mut s = SerialPort::new(irq.try_clone().unwrap(), Box::new(io::sink()));
        s.write(IER, &[1]); // Received-data interrupt on.
        assert_eq!(s.enqueue_input(b"ab"), 2);
        let mut lsr = [0u8];
        s.read(LSR, &mut lsr);
        assert_ne!(lsr[0] & LSR_DATA_READY, 0);
        let mut c = [0u8; 2];
        s.read(THR, &mut c);
        assert_eq!(c, [b'a', 0], "extra bytes of a wide read are zero");
        assert!(irq.read().unwrap() >= 1);
    }

    #[test]
    fn input_beyond_fifo_is_refused_not_lost_silently() {
        let mut s = SerialPort::new(EventFd::new(0).unwrap(), Box::new(io::sink()));
        let big = vec![b'x'; 1000];
        let n = s.enqueue_input(&big);
        assert!(n > 0 && n < 1000);
        assert_eq!(s.enqueue_input(b"y"), 0);
    }

    #[test]
    fn out_of_range_offsets_are_ignored() {
        let mut s = SerialPort::new(EventFd::new(0).unwrap(), Box::new(io::sink()));
        s.write(0x1234, &[1]);
        s.write(0, &[]);
        let mut d = [9u8; 1];
        s.read(0x1234, &mut d);
        assert_eq!(d, [0]);
    }

    fn libc_nonblock() -> i32 {
        vmm_sys_util::eventfd::EFD_NONBLOCK
    }
}
