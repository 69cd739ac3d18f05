# frozen_string_literal: true

module Blazen
  module ControlPlane
    # A control plane running inside this process.
    class Server
      include OwnedHandle
      S = FFISupport
      private_constant :S

      # Starts a control plane listening on `bind` ("IP:PORT"; port 0 picks one).
      # With a block, yields the server and shuts it down when the block ends.
      # @param bind [String]
      # @param options [Hash] `bearer_token:`, `cert_path:`, `key_path:`, `ca_path:`,
      #   `store_url:` ("redis://HOST:PORT/DB": keep runs in Redis/Valkey so a new
      #   control plane on the same store resumes them) and `finished_ttl_ms:`
      #   (how long finished runs stay describable there; default one hour, 0 keeps them)
      # @param http [String, nil] "IP:PORT" (port 0 picks one) to serve the HTTP side
      #   there: Prometheus `/metrics`, `/healthz`, `/readyz`, the JSON run API and the
      #   dashboard at `/`, behind the bearer token when there is one (the option
      #   `http_addr:` does the same); see {#http_endpoint}
      # @yieldparam server [Server]
      # @return [Server, Object] the server, or the block's value
      # @raise [Blazen::ValidationError] for a bad address or option
      # @raise [Blazen::PeerError] when the store cannot be reached within 3 s
      #   (subkind "ControlPlaneStore")
      def self.start(bind = "127.0.0.1:0", http: nil, **options)
        ControlPlane.ensure_available!
        options = options.merge(http_addr: http) unless http.nil?
        fut = Native.blazen_controlplane_server_start_with_options(bind, S.json(options, null_as_nil: true))
        server = new(S.await(fut, :blazen_future_take_controlplane_server))
        return server unless block_given?

        begin
          yield server
        ensure
          server.shutdown
          server.close
        end
      end

      # @api private
      def initialize(ptr)
        adopt(ptr, :blazen_controlplane_server_free)
      end

      # @return [String] "http://IP:PORT" ("https://" with TLS)
      def endpoint = S.take_string(Native.blazen_controlplane_server_endpoint(ptr))

      # @return [Integer] the port it listens on
      def port = Native.blazen_controlplane_server_port(ptr)

      # @return [String, nil] "http://IP:PORT" of the HTTP side, nil when it was
      #   started without one
      def http_endpoint = S.take_string(Native.blazen_controlplane_server_http_endpoint(ptr))

      # One page of the runs this control plane knows, newest first (every
      # unfinished run and the last 10,000 finished ones).
      # @param status [Symbol, String, nil] :pending, :running, :completed, :failed or :cancelled
      # @param workflow [String, nil] only runs of this workflow
      # @param limit [Integer, nil] 1 to 1,000 (default 50)
      # @param before [Integer, nil] the `next_cursor` of the page before
      # @return [Hash] `{runs: [Hash], next_cursor: Integer or nil}`; each run has
      #   :run_id, :seq, :workflow, :status (a Symbol), :submitted_ms, :assigned_ms,
      #   :finished_ms, :duration_ms, :node_id, :error and :requeues
      # @raise [Blazen::ValidationError] for a bad filter
      def list_runs(status: nil, workflow: nil, limit: nil, before: nil)
        filter = { status: status&.to_s, workflow: workflow, limit: limit, before: before }.compact
        out = S.call_out do |o, err|
          Native.blazen_controlplane_server_list_runs(ptr, S.json(filter), o, err)
        end
        page = JSON.parse(S.take_string(out), symbolize_names: true)
        page[:runs].each { |r| r[:status] = r[:status].to_sym }
        page
      end

      # Every run matching the filter, newest first, a page at a time.
      # @return [Enumerator<Hash>]
      def each_run(status: nil, workflow: nil, page_size: 200)
        return enum_for(:each_run, status: status, workflow: workflow, page_size: page_size) unless block_given?

        before = nil
        loop do
          page = list_runs(status: status, workflow: workflow, limit: page_size, before: before)
          page[:runs].each { |r| yield r }
          before = page[:next_cursor]
          break if before.nil?
        end
      end

      # Stops gracefully (open streams get a short grace); idempotent.
      # @return [nil]
      def shutdown
        Native.blazen_controlplane_server_shutdown(@ptr) if @ptr
        nil
      end
    end
  end
end
