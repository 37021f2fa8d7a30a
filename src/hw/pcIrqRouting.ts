/**
 * How a PC board wires interrupt lines (GSIs) to the two interrupt controllers, as
 * QEMU sets up KVM's routing table (`kvm_pc_setup_irq_routing`) and wires its own
 * chips: GSI 0-15 reach the 8259A pair and the IOAPIC pin of the same number, except
 * that the PIT's GSI 0 reaches IOAPIC pin 2 (the ACPI interrupt source override every
 * PC firmware declares) and GSI 2, the PIC cascade, is not a device line. GSI 16-23
 * reach only the IOAPIC.
 */

/** The 8259A input for `gsi`, or -1. */
export const picLineOfGsi = (gsi: number): number => (gsi >= 0 && gsi < 16 && gsi !== 2 ? gsi : -1)

/** The IOAPIC pin for `gsi`, or -1. */
export const ioapicPinOfGsi = (gsi: number): number => (gsi === 0 ? 2 : gsi === 2 || gsi < 0 || gsi > 23 ? -1 : gsi)

/** The PIT's line. */
export const PIT_GSI = 0
/** The RTC's line (slave 8259A input 0). */
export const RTC_GSI = 8
