import { CpuState, CR0_PE, GuestFault, Seg, TLB_LIST_CAPACITY, Vector } from "./state.ts"

export const CR0_WP = 1 << 16
export const CR0_PG = 0x80000000
export const CR4_PSE = 1 << 4
export const CR4_PGE = 1 << 7

/** Access kinds for translation; a fetch is a read (32-bit paging has no execute-disable). */
export const ACCESS_WRITE = 1
const ACCESS_USER = 2

/** Paging-structure entry bits (SDM Vol. 3A, Tables 4-4 to 4-6). */
const PTE_P = 1 << 0
const PTE_RW = 1 << 1
const PTE_US = 1 << 2
const PTE_A = 1 << 5
const PTE_D = 1 << 6
const PDE_PS = 1 << 7
const PTE_G = 1 << 8

/** Bits 21:13 of a 4 MiB PDE with MAXPHYADDR 32. */
const PDE_4M_RESERVED = 0x003fe000

/** #PF error code bits (SDM Vol. 3A, 4.7). */
const PF_P = 1 << 0
const PF_W = 1 << 1
const PF_U = 1 << 2
const PF_RSVD = 1 << 3

/**
 * TLB entry: the physical frame in bits 31:12 and what the cached translation allows
 * without a walk. The write rights are only given once the D bit is set, so the first
 * write through an entry walks and sets D, as hardware does.
 */
const TLB_VALID = 1
const TLB_USER = 2
const TLB_USER_WRITE = 4
const TLB_SUPER_WRITE = 8

/** A global page (G with CR4.PGE): kept across CR3 loads. */
const TLB_GLOBAL = 16

/** Bits an access needs in its TLB entry, indexed by ACCESS_WRITE | ACCESS_USER. */
const TLB_NEED = Int32Array.of(TLB_VALID, TLB_VALID | TLB_SUPER_WRITE, TLB_VALID | TLB_USER, TLB_VALID | TLB_USER_WRITE)

/** Linear to guest-physical: two-level 32-bit paging with 4 MiB pages, the TLB, and linear reads and writes that may straddle pages. */
export abstract class Paging extends CpuState {
  /** CPL 3 makes an explicit access a user-mode access (SDM Vol. 3A, 4.6); implicit ones (GDT, IDT, TSS) pass 0. */
  protected get userAccess(): number {
    return (this.segAttr[Seg.SS] & 0x60) === 0x60 && (this.cr0 & CR0_PE) !== 0 ? ACCESS_USER : 0
  }

  /**
   * Linear to guest-physical for one access (ACCESS_WRITE | ACCESS_USER) that stays
   * within a page. Paging off: the identity, one branch. Paging on: a TLB hit is one
   * typed-array read and a mask test; a miss, or a hit without the rights the access
   * needs (including a write to an entry whose D bit is not yet set), walks.
   */
  protected translate(linear: number, access: number): number {
    if ((this.cr0 & CR0_PG) === 0) return linear
    const e = this.tlb[linear >>> 12]
    const need = TLB_NEED[access]
    if ((e & need) === need) return ((e & ~0xfff) | (linear & 0xfff)) >>> 0
    return this.walk(linear >>> 0, access)
  }

  /**
   * The two-level 32-bit page walk (SDM Vol. 3A, 4.3) with 4 MiB pages under CR4.PSE.
   * Entries are read and their A/D bits written through guest-physical memory, so an
   * EPT violation on a page-table page happens as on hardware. As on Intel processors
   * (and QEMU), the PDE's A bit is set once the PDE is found present and valid, even
   * if the PTE then faults; the final entry's A (and D on a write) only once the
   * access is allowed. The model's MAXPHYADDR is 32: PSE-36 is not offered, so
   * bits 21:13 of a 4 MiB PDE are reserved (a #PF with RSVD set).
   */
  protected walk(linear: number, access: number): number {
    if (this.tlb.length === 0) this.tlb = new Int32Array(1 << 20)
    const write = (access & ACCESS_WRITE) !== 0
    const pdeAddress = ((this.cr3 & 0xfffff000) | ((linear >>> 20) & 0xffc)) >>> 0
    let pde = this.mem.read32(pdeAddress)
    if ((pde & PTE_P) === 0) throw this.pageFault(linear, access, 0)
    let frame: number
    let rights: number
    let dirty: boolean
    let global: boolean
    if ((pde & PDE_PS) !== 0 && (this.cr4 & CR4_PSE) !== 0) {
      if ((pde & PDE_4M_RESERVED) !== 0) throw this.pageFault(linear, access, PF_P | PF_RSVD)
      this.checkPageRights(pde, linear, access)
      const set = write ? PTE_A | PTE_D : PTE_A
      if ((pde & set) !== set) {
        pde |= set
        this.mem.write8(pdeAddress, pde & 0xff)
      }
      this.tlbHasLarge = true
      frame = ((pde & 0xffc00000) | (linear & 0x3ff000)) >>> 0
      rights = pde
      dirty = (pde & PTE_D) !== 0
      global = (pde & PTE_G) !== 0
    } else {
      if ((pde & PTE_A) === 0) {
        pde |= PTE_A
        this.mem.write8(pdeAddress, pde & 0xff)
      }
      const pteAddress = ((pde & 0xfffff000) | ((linear >>> 10) & 0xffc)) >>> 0
      let pte = this.mem.read32(pteAddress)
      if ((pte & PTE_P) === 0) throw this.pageFault(linear, access, 0)
      rights = pde & pte
      this.checkPageRights(rights, linear, access)
      const set = write ? PTE_A | PTE_D : PTE_A
      if ((pte & set) !== set) {
        pte |= set
        this.mem.write8(pteAddress, pte & 0xff)
      }
      frame = (pte & 0xfffff000) >>> 0
      dirty = (pte & PTE_D) !== 0
      global = (pte & PTE_G) !== 0
    }
    let bits = TLB_VALID
    if (global && (this.cr4 & CR4_PGE) !== 0) bits |= TLB_GLOBAL
    const userPage = (rights & PTE_US) !== 0
    const writable = (rights & PTE_RW) !== 0
    if (userPage) bits |= TLB_USER
    if (dirty) {
      if (userPage && writable) bits |= TLB_USER_WRITE
      if (writable || (this.cr0 & CR0_WP) === 0) bits |= TLB_SUPER_WRITE
    }
    const page = linear >>> 12
    if (this.tlb[page] === 0) {
      if (this.tlbCount < TLB_LIST_CAPACITY) this.tlbList[this.tlbCount] = page
      this.tlbCount++
    }
    this.tlb[page] = frame | bits
    return (frame | (linear & 0xfff)) >>> 0
  }

  /** U/S and R/W of the combined entries against the access; supervisor writes obey CR0.WP (SDM Vol. 3A, 4.6.1). */
  protected checkPageRights(rights: number, linear: number, access: number): void {
    if ((access & ACCESS_USER) !== 0) {
      if ((rights & PTE_US) === 0) throw this.pageFault(linear, access, PF_P)
      if ((access & ACCESS_WRITE) !== 0 && (rights & PTE_RW) === 0) throw this.pageFault(linear, access, PF_P)
    } else if ((access & ACCESS_WRITE) !== 0 && (rights & PTE_RW) === 0 && (this.cr0 & CR0_WP) !== 0) {
      throw this.pageFault(linear, access, PF_P)
    }
  }

  /**
   * #PF: CR2 takes the linear address, the error code the P/RSVD bits given plus W/R
   * and U/S from the access (I/D is always 0: 32-bit paging has no execute-disable).
   * A faulting translation leaves no TLB entry for the page.
   */
  protected pageFault(linear: number, access: number, bits: number): GuestFault {
    if (this.tlb.length !== 0) this.tlb[linear >>> 12] = 0
    this.cr2 = linear >>> 0
    return this.fault(Vector.PF, bits | ((access << 1) & (PF_W | PF_U)))
  }

  /**
   * Drops every TLB entry (CR0.PG/WP and CR4.PSE/PGE changes, KVM_SET_SREGS), or, for a
   * CR3 load (`keepGlobal`), every entry but those of global pages (G with CR4.PGE;
   * SDM Vol. 3A, 4.10.2.4).
   */
  flushTlb(keepGlobal = false): void {
    if (this.tlb.length === 0) return
    const tlb = this.tlb
    let kept = 0
    if (this.tlbCount <= TLB_LIST_CAPACITY) {
      for (let i = 0; i < this.tlbCount; i++) {
        const page = this.tlbList[i]
        if (keepGlobal && (tlb[page] & TLB_GLOBAL) !== 0) this.tlbList[kept++] = page
        else tlb[page] = 0
      }
    } else if (keepGlobal) {
      for (let page = 0; page < tlb.length; page++) {
        if ((tlb[page] & TLB_GLOBAL) === 0) tlb[page] = 0
        else if (kept < TLB_LIST_CAPACITY) this.tlbList[kept++] = page
        else kept++
      }
    } else {
      tlb.fill(0)
    }
    this.tlbCount = kept
    if (kept === 0) this.tlbHasLarge = false
  }

  /** INVLPG: the page's entry; if 4 MiB pages are cached, every 4 KiB slot of the 4 MiB region it lies in. */
  protected invalidatePage(linear: number): void {
    if (this.tlb.length === 0) return
    if (this.tlbHasLarge) this.tlb.fill(0, (linear >>> 22) << 10, ((linear >>> 22) + 1) << 10)
    else this.tlb[linear >>> 12] = 0
  }

  /** An implicit supervisor read (descriptor tables, the TSS); 4 bytes may cross a page. */
  protected readLinear32(linear: number): number {
    return this.readLinear(linear >>> 0, 4, 0)
  }

  protected readLinear(linear: number, size: number, access: number): number {
    if ((this.cr0 & CR0_PG) !== 0 && (linear & 0xfff) > 0x1000 - size) return this.readCrossing(linear, size, access)
    const pa = this.translate(linear, access)
    return size === 1 ? this.mem.read8(pa) : size === 2 ? this.mem.read16(pa) : this.mem.read32(pa)
  }

  protected writeLinear(linear: number, size: number, value: number, access: number): void {
    if ((this.cr0 & CR0_PG) !== 0 && (linear & 0xfff) > 0x1000 - size) return this.writeCrossing(linear, size, value, access)
    const pa = this.translate(linear, access)
    if (size === 1) this.mem.write8(pa, value)
    else if (size === 2) this.mem.write16(pa, value)
    else this.mem.write32(pa, value)
  }

  /** An access that straddles two pages: both are translated (and may fault) before any byte moves. */
  protected readCrossing(linear: number, size: number, access: number): number {
    const first = this.translate(linear, access)
    const second = this.translate(((linear + size - 1) & ~0xfff) >>> 0, access)
    const split = 0x1000 - (linear & 0xfff)
    let v = 0
    for (let i = 0; i < size; i++) v |= (i < split ? this.mem.read8(first + i) : this.mem.read8(second + i - split)) << (8 * i)
    return v >>> 0
  }

  protected writeCrossing(linear: number, size: number, value: number, access: number): void {
    const first = this.translate(linear, access)
    const second = this.translate(((linear + size - 1) & ~0xfff) >>> 0, access)
    const split = 0x1000 - (linear & 0xfff)
    for (let i = 0; i < size; i++) {
      const b = (value >>> (8 * i)) & 0xff
      if (i < split) this.mem.write8(first + i, b)
      else this.mem.write8(second + i - split, b)
    }
  }

  /** Checks that a write to `size` bytes at `linear` would be allowed by paging, without writing. */
  protected probeWrite(linear: number, size: number): void {
    if ((this.cr0 & CR0_PG) === 0) return
    const access = ACCESS_WRITE | this.userAccess
    this.translate(linear, access)
    if ((linear & 0xfff) > 0x1000 - size) this.translate(((linear + size - 1) & ~0xfff) >>> 0, access)
  }
}
