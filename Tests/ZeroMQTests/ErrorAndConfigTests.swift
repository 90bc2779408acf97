import ScheduleZeroWire
import ScheduleZeroTesting
import Testing
import ZMQClient
import ZeroMQ

@Suite(.tags(.unit, .zmq), .leakChecked)
struct unit_zmq_ErrorsAndConfiguration {
    @Test func errorsAreNamedByErrno() {
        let efsm = ZMQError(errno: ZMQError.efsmErrno, operation: "zmq_send")
        #expect(efsm.code == .efsm)
        #expect(efsm.description.hasPrefix("zmq_send: EFSM (156384763): "))
        #expect(efsm.message.contains("current state"))
        #expect(ZMQError(errno: 11, operation: "zmq_msg_recv").code == .eagain)
        #expect(ZMQError(errno: ZMQError.etermErrno, operation: "x").code.name == "ETERM")
        #expect(ZMQError(errno: 113, operation: "x").code == .ehostunreach)
        #expect(ZMQError(errno: 9999, operation: "x").code == .other(9999))
    }

    @Test func backoffDoublesAndCaps() {
        let c = ClientConfiguration(retryDelay: .seconds(1), maxRetryDelay: .seconds(3))
        #expect(c.baseDelay(beforeAttempt: 1) == .zero)
        #expect(c.baseDelay(beforeAttempt: 2) == .seconds(1))
        #expect(c.baseDelay(beforeAttempt: 3) == .seconds(2))
        #expect(c.baseDelay(beforeAttempt: 4) == .seconds(3))
        #expect(c.baseDelay(beforeAttempt: 9) == .seconds(3))
        #expect(ClientConfiguration().baseDelay(beforeAttempt: 3) == .zero)
        #expect(ClientConfiguration(attempts: 0).attempts == 1)
    }

    @Test func upstreamServerRule() {
        let u = ClientConfiguration.upstreamServer
        #expect(u.timeout == .seconds(10))
        #expect(u.attempts == 3)
        #expect(u.retryDelay == .seconds(1))
        #expect(u.jitter == 0.5)
    }

    @Test func clientErrorsSayWhereWhatHowManyHowLong() {
        let e = ClientError.noReply(endpoint: "tcp://127.0.0.1:4245", method: "heartbeat", attempts: 3,
                                    elapsed: .milliseconds(7520), timeout: .milliseconds(2500))
        #expect(e.description == "heartbeat to tcp://127.0.0.1:4245: no reply after 3 attempts in 7.52 s (timeout 2.5 s each)")
    }

    @Test func durationMillisecondsRoundUp() {
        #expect(Duration.microseconds(1).wholeMilliseconds == 1)
        #expect(Duration.milliseconds(250).wholeMilliseconds == 250)
        #expect(Duration.zero.wholeMilliseconds == 0)
    }
}

@Suite(.tags(.unit, .zmq), .leakChecked)
struct unit_zmq_ReplyService {
    @Test func protocolErrorsComeBeforeTheHandler() {
        let echo: (Request) -> Reply = { .wrapping(.object($0.params)) }
        #expect(ReplyService.reply(to: [Request(method: "m", params: ["a": 1]).encoded()], echo).fields == ["a": 1, "success": true])
        #expect(ReplyService.reply(to: [Array("nope".utf8)], echo) == .failure("Invalid JSON"))
        #expect(ReplyService.reply(to: [Array("[1]".utf8)], echo) == .failure("Invalid request: expected a JSON object"))
        #expect(ReplyService.reply(to: [Array("{}".utf8), Array("{}".utf8)], echo) == .failure(Wire.multipartRejected))
    }
}
