import Foundation
import Testing
import ScheduleZeroTesting
@testable import Governor

/// The /proc readers `szbench managers` compares process managers with.
@Suite(.tags(.unit, .governor), .leakChecked)
struct unit_governor_ProcUsage {
    static let status = """
        Name:\tsupervisord
        Umask:\t0022
        State:\tS (sleeping)
        Tgid:\t4242
        VmPeak:\t   40000 kB
        VmRSS:\t   24372 kB
        RssAnon:\t   12000 kB
        Threads:\t3
        SigQ:\t0/95721
        voluntary_ctxt_switches:\t1517
        nonvoluntary_ctxt_switches:\t23

        """

    @Test func taskStatusReadsRssThreadsAndContextSwitches() throws {
        let s = try #require(ProcTaskStatus.parse(Self.status))
        #expect(s == ProcTaskStatus(residentKiB: 24_372, threads: 3, voluntarySwitches: 1517, involuntarySwitches: 23))
    }

    @Test func aZombieHasNoResidentMemoryAndGarbageIsNoStatus() throws {
        let zombie = "Name:\tx\nState:\tZ (zombie)\nThreads:\t1\nvoluntary_ctxt_switches:\t2\nnonvoluntary_ctxt_switches:\t0\n"
        #expect(try #require(ProcTaskStatus.parse(zombie)).residentKiB == 0)
        #expect(ProcTaskStatus.parse("not a status file") == nil)
        #expect(ProcTaskStatus.parse("") == nil)
    }

    @Test func childrenListsAreSpaceSeparated() {
        #expect(ProcUsage.parsePidList("12 345 6789 ") == [12, 345, 6789])
        #expect(ProcUsage.parsePidList("") == [])
        #expect(ProcUsage.parsePidList("7\n") == [7])
    }

    @Test func thisProcessIsReadFromProc() throws {
        let s = try #require(ProcTaskStatus.read("/proc/self/status"))
        #expect(s.residentKiB > 0)
        #expect(s.threads >= 1)
        #expect(ProcUsage.tasks(of: getpid()).count >= 1)
        #expect(try #require(ProcUsage.cpuNanoseconds(of: getpid())) > 0)
        let switches = ProcUsage.contextSwitchesByThread(of: getpid())
        #expect(Set(switches.keys).contains(getpid()), "the main thread's id is the PID")
    }
}
